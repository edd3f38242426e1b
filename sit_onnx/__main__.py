from sit_onnx.cli import main

main()
