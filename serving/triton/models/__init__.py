"""The Python-backend models a release puts into its Triton repository (copied in as ``model.py``).

They run inside Triton's Python stub, whose numpy 2 ``as_numpy()`` and ``Tensor(name, array)``
silently corrupt tensors: every tensor crosses the boundary by DLPack instead.
"""
