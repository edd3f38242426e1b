"""How tests/data/tf2onnx_keras_block.onnx was made: a Keras 3 transformer block with random weights
(seed 0; MultiHeadAttention, tanh-GELU MLP, swish, hard_swish and hard_sigmoid Dense layers, a
softmax classifier) traced by TensorFlow 2.21 and exported by tf2onnx 1.17.0 at opset 17. Keras
writes hard_swish and hard_sigmoid through ReLU6 (`Clip(x + 3, 0, 6) / 6`). Not run by the tests
(TensorFlow is not a dependency); kept so the file can be made again.

    pip install tensorflow-cpu==2.21.0 tf2onnx==1.17.0; python tests/data/make_tf2onnx_keras.py
"""

from pathlib import Path

import keras
import tensorflow as tf
import tf2onnx
from keras import layers

HERE = Path(__file__).resolve().parent

if __name__ == "__main__":
    keras.utils.set_random_seed(0)
    inputs = keras.Input((8, 32))
    x = inputs + layers.MultiHeadAttention(num_heads=2, key_dim=16)(*[layers.LayerNormalization()(inputs)] * 2)
    y = layers.Dense(64)(layers.LayerNormalization()(x))
    y = layers.Activation(lambda t: keras.activations.gelu(t, approximate=True))(y)  # TF's erf GELU is Erfc
    x = x + layers.Dense(32)(y)
    for activation in ("swish", "hard_swish", "hard_sigmoid"):
        x = layers.Dense(32, activation=activation)(x)
    outputs = layers.Dense(10, activation="softmax")(layers.GlobalAveragePooling1D()(x))
    model = keras.Model(inputs, outputs)
    spec = (tf.TensorSpec((None, 8, 32), tf.float32, name="x"),)
    traced = tf.function(model, input_signature=spec)
    output = str(HERE / "tf2onnx_keras_block.onnx")
    tf2onnx.convert.from_function(traced, input_signature=spec, opset=17, output_path=output)
