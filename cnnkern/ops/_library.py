"""The ``cnnkern`` operator library: schemas defined with ``torch.library.Library`` define/impl.

These ops are what ``torch.compile``, ``opcheck`` and direct ``torch.ops.cnnkern.*`` callers see. Eager calls
of the public functions do not go through them (see ``cnnkern.ops._route``): a define/impl op costs a few
microseconds per dispatcher hop, the ``@custom_op`` wrapper 10-36 us, the eager route about one.
"""

from __future__ import annotations

from collections.abc import Callable

import torch

LIB = torch.library.Library("cnnkern", "FRAGMENT")


def define(schema: str, impl: Callable, fake: Callable, backward: Callable | None = None,
           setup_context: Callable | None = None):
    """Define ``cnnkern::<name>`` from its schema, with one implementation for every device (it picks the
    backend itself), a fake kernel, and optionally an autograd formula. Returns the op overload."""
    name = schema.split("(", 1)[0]
    LIB.define(schema)
    LIB.impl(name, impl, "CompositeExplicitAutograd")
    torch.library.register_fake(f"cnnkern::{name}", fake, lib=LIB)
    if backward is not None:
        torch.library.register_autograd(f"cnnkern::{name}", backward, setup_context=setup_context, lib=LIB)
    return getattr(torch.ops.cnnkern, name).default
