"""A small CNN against a fully connected network on 8x8 digits, in NumPy with fastconv.

    pip install "fastconv[demo]"
    python examples/cnn_vs_dense.py            # about a minute; --quick for a few seconds

Both networks see the same 1,348 training images and are scored on the same 449
test images. The CNN's two convolution layers are ``fastconv.nn.Conv2d`` objects:
``forward`` keeps what ``backward`` needs, ``backward`` returns dL/dx and adds to
``.grads`` (reset by ``zero_grad()``, as in PyTorch); ReLU, 2x2 max pooling, the linear
read-out, softmax and Adam are a few
lines of NumPy each, in ``fastconv/demo.py`` (also run by ``fastconv demo``).
It prints a finite-difference check of the conv layer's backward, then test
accuracy, parameter count and training time for each network, and plots accuracy
against parameter count to ``cnn_vs_dense.png``.

A training step of the CNN, spelled out:

    logits = model.forward(x)                  # conv -> relu -> pool -> conv -> ... -> linear
    loss, g = softmax_cross_entropy(logits, y)
    zero_grad(model)                           # gradients accumulate until reset
    model.backward(g)                          # adds to each layer's .grads
    for layer in model.layers:
        for name, p, grad in layer.parameters():
            p -= lr * grad                     # (the demo uses Adam)
"""
import sys

from fastconv.demo import main

if __name__ == "__main__":
    argv = sys.argv[1:]
    if not any(a.startswith("--plot") for a in argv):
        argv += ["--plot", "cnn_vs_dense.png"]
    sys.exit(main(argv))
