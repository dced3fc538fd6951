"""What both Python-backend models need inside Triton's stub: tensors across by DLPack (numpy 2's
``as_numpy()`` there silently corrupts them), and quiet about the stub's harmless capsule message."""

import sys

import numpy as np
import triton_python_backend_utils as pb_utils


def quiet_dlpack() -> None:
    """The stub's DLPack capsules print ``PyCapsule_GetPointer called with incorrect name`` when freed."""
    hook = sys.unraisablehook

    def filtered(unraisable):
        if "PyCapsule_GetPointer" not in str(unraisable.exc_value):
            hook(unraisable)

    sys.unraisablehook = filtered


def input_array(request, name: str) -> np.ndarray:
    return np.from_dlpack(pb_utils.get_input_tensor_by_name(request, name))


def output_array(response, name: str) -> np.ndarray:
    """An output of a BLS response, copied out of the stub's shared memory."""
    return np.from_dlpack(pb_utils.get_output_tensor_by_name(response, name)).copy()


def tensor(name: str, value: np.ndarray, dtype=np.float32):
    return pb_utils.Tensor.from_dlpack(name, np.ascontiguousarray(value, dtype=dtype))
