"""The worker-process side of the local executor: one process per device, running real diffusers models.

`genserve.workers.worker.worker_main` is the process entry point; `genserve.executors.local.LocalExecutor` starts
the processes and speaks the command protocol documented in `genserve.workers.protocol`.
This package imports torch only inside the worker process (the module itself stays light).
"""

from genserve.workers.protocol import WorkerConfig

__all__ = ["WorkerConfig"]
