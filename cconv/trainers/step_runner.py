"""How a model's forward and backward passes run: through the compiled plan (:mod:`cconv.plan`)
or layer by layer, decided in this one place.

Every model hands its ``_forward`` / ``_backward`` calls to its :class:`StepRunner` (made on
first use; the trainer's steps, evaluate and predict all go through it). For each forward
call the runner takes the model's plan when there is one for the model and the batch
(``jit_compile`` on, ``CCONV_PLAN`` not 0, a chain with native nodes, a batch the plan
accepts: :func:`cconv.plan.get_plan` and :func:`cconv.plan.get_train_plan` decide, and
cache, from the model's current layers), and the model's own layer-by-layer pass (the
``layer_forward`` / ``layer_backward`` functions the model gives the runner) otherwise. A
training forward that ran through the plan leaves the plan here, holding what its backward
needs, until the step's backward; the model itself keeps no such state.
"""

from .. import plan as _plan

__all__ = ["StepRunner"]


class StepRunner:
    """Runs one model's forward and backward passes (see the module docstring).

    Args:
        model: a built cconv model (``cconv.Model`` or ``cconv.Sequential``).
        layer_forward: ``layer_forward(x, training, logits)``, the model's output for the
            batch ``x`` computed layer by layer (caching for ``layer_backward`` in training).
        layer_backward: ``layer_backward(g, logits)``, the layer-by-layer backward pass of
            the last training ``layer_forward``.
    """

    def __init__(self, model, layer_forward, layer_backward):
        self.model = model
        self.layer_forward, self.layer_backward = layer_forward, layer_backward
        self.train_plan = None       # the training plan whose forward ran last, until backward

    def forward(self, x, training, logits=False):
        """The model's output for the batch ``x`` (its final logits with ``logits``, for a
        loss fused with the output activation); in training, caches for :meth:`backward`."""
        model = self.model
        if training:
            tplan = _plan.get_train_plan(model, logits)
            if tplan is not None and tplan.accepts(x):
                self.train_plan = tplan
                return tplan.forward(x)
            self.train_plan = None
        else:
            plan = _plan.get_plan(model, logits)
            if plan is not None and plan.accepts(x):
                return plan(x)
        return self.layer_forward(x, training, logits)

    def backward(self, g, logits=False):
        """Back-propagate ``g = dL/d(output)`` (``dL/d(logits)`` with ``logits``) through
        whatever ran the last training forward, leaving the weight gradients in each layer's
        ``grads``."""
        tplan, self.train_plan = self.train_plan, None
        if tplan is not None:
            tplan.backward(g)
        else:
            self.layer_backward(g, logits)

    def __getstate__(self):
        state = self.__dict__.copy()
        state["train_plan"] = None          # a plan holds native buffers
        return state
