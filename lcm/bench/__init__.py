"""The benchmarks of lcm-jax (``lcm bench``, or ``python -m lcm.bench``).

:mod:`lcm.bench.run` holds the parts (peak, train, generate, codec, startup, scaling) and
their command line; :mod:`lcm.bench.torch_peer` is the PyTorch peer of the training step,
imported only when PyTorch (the ``bench`` extra) is installed. The bench configs
(``configs/*.yaml``) and the codec part's sentence sample (``sentences.txt``) ship with the
package, so the benchmarks run from any installation.
"""

from lcm.bench.run import main

__all__ = ["main"]
