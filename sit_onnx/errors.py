"""The one exception type for user mistakes; the CLI prints it as one line and exits 1."""


class SitOnnxError(Exception):
    """A problem with the user's input (file, model, option), not a bug in sit-onnx."""
