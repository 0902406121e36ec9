"""Training: the :class:`~cconv.trainers.trainer.Trainer` (compile / fit / evaluate /
predict for every model), the epoch/batch loop and its data adapters
(:mod:`~cconv.trainers.epoch_iterator`), what ``compile`` makes of several outputs
(:mod:`~cconv.trainers.compile_utils`), the :class:`~cconv.trainers.step_runner.StepRunner`
that runs each forward/backward through the compiled plan or the layers, and the threads of
repeated calls on a loaded machine (:mod:`~cconv.trainers.load_guard`)."""
