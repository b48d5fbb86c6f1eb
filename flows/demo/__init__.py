"""``make demo`` (``python -m flows.demo``, :mod:`flows.demo.run`) and its local HTTP
receiver."""
