"""Triton kernels of the ops. Imported lazily (only when an op runs with impl="triton"), so
that Triton stays optional and ``TRITON_INTERPRET`` is read after the caller has set it."""
