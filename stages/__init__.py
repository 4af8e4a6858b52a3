"""DVC stages: `python -m stages.<name>`. Thin: parse params, call safeforge, write outputs.

Python imports this package before any stage module, so the CPU kernel pins are set here,
before numpy or torch loads (safeforge/determinism.py says why).
"""

from safeforge.determinism import pin_cpu_kernels

pin_cpu_kernels()
