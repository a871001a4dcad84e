"""Trading's queue tasks, registered on each queue by ``market.trading.init_services``.

``train_run`` trains one bought run; ``reap_lost_runs`` (every minute) fails the runs whose
worker stopped sending heartbeats, charged once. The execution module (and so torch and
Opacus) is imported when a task runs, not when the queue is built.
"""

from __future__ import annotations

from huey import crontab

from market.interfaces import TaskQueue
from market.services import Services


def register_tasks(queue: TaskQueue, services: Services) -> None:
    @queue.task("train_run")
    def train_run(run_id: str) -> None:
        from market.trading import execution

        execution.execute_run(services, run_id)

    @queue.periodic_task(crontab(minute="*"), "reap_lost_runs")
    def reap() -> None:
        from market.trading.lifecycle import reap_lost_runs

        reap_lost_runs(services)
