"""Run ``gcloud-tasks-emulator`` 0.6.2 on 127.0.0.1 with the fixes the tests need (run with the emulator's
own virtualenv: it pins ``protobuf<5``, so it cannot share the project's).

    python tasks_emulator.py [--port 0] [--oidc-key key.pem --oidc-kid KID] [--tombstone-seconds 3600]

prints ``READY 127.0.0.1:<port>`` once the gRPC API listens (on loopback only; the packaged CLI binds every
interface). The emulator's own gRPC servicer and queue state are used, patched at run time:

* **the run_task/purge race** (a task removed while the queue's thread iterates killed that thread for good):
  every task list is guarded by one lock, and the dispatcher below replaces the emulator's queue threads;
* **GetTask and DeleteTask** (UNIMPLEMENTED in the emulator) are implemented;
* **NOT_FOUND** for an unknown queue in GetQueue, CreateTask, PurgeQueue, PauseQueue and ResumeQueue (the
  emulator answered UNKNOWN or FAILED_PRECONDITION);
* **ALREADY_EXISTS** for a task name that exists, or existed within ``--tombstone-seconds`` (the real
  service refuses a deleted or executed task's name for about an hour; the emulator accepted duplicates and
  dispatched them twice);
* **concurrent dispatch**: up to the queue's ``rate_limits.max_concurrent_dispatches`` requests at once
  (the emulator dispatched one task at a time per queue), each with the task's ``dispatch_deadline`` as its
  timeout (the emulator waited forever on a hung target);
* **retry pacing**: a failed dispatch is retried after 50 ms, doubling up to 1 s (the emulator retried at
  once, about 10 times a second, forever); the queue's own ``retry_config`` is still ignored;
* **OIDC**: a task with an ``oidc_token`` gets ``Authorization: Bearer <JWT>`` signed RS256 with
  ``--oidc-key`` (issuer ``https://accounts.google.com``, audience the token's or the URL, ``email`` the
  service account, one hour of validity), as Cloud Tasks does with Google's keys (the emulator sent none).

Differences from the real service that remain: state is in memory; queue settings other than
``max_concurrent_dispatches`` are ignored (rate limits, retry_config, max_attempts); no IAM; task responses
lack ``create_time``/``schedule_time``; ``X-CloudTasks-TaskExecutionCount`` counts every dispatch.
"""

from __future__ import annotations

import argparse
import contextlib
import logging
import sys
import threading
import time
from concurrent import futures
from datetime import datetime, timezone
from urllib import error, request

import grpc
from gcloud_tasks_emulator import server as emulator
from gcloud_tasks_emulator.cloudtasks_pb2_grpc import add_CloudTasksServicer_to_server
from google.api_core.exceptions import AlreadyExists, NotFound
from google.cloud.tasks_v2 import Attempt, Queue, Task
from google.protobuf import empty_pb2

log = logging.getLogger("tasks-emulator")

DEFAULT_DEADLINE = 600.0


class Signer:
    """Mints Google-style OIDC identity tokens with a test key."""

    def __init__(self, key_path: str, kid: str) -> None:
        from google.auth import crypt, jwt

        with open(key_path, encoding="utf-8") as file:
            self._signer = crypt.RSASigner.from_string(file.read(), key_id=kid)
        self._jwt = jwt

    def token(self, email: str, audience: str) -> str:
        now = int(time.time())
        claims = {
            "iss": "https://accounts.google.com",
            "aud": audience,
            "azp": email,
            "sub": "1" + str(abs(hash(email)))[:20],
            "email": email,
            "email_verified": True,
            "iat": now,
            "exp": now + 3600,
        }
        token: bytes = self._jwt.encode(self._signer, claims)
        return token.decode()


class State(emulator.QueueState):
    """The emulator's queue state with one lock, tombstones and in-flight tracking."""

    def __init__(self, max_retries: int, tombstone_seconds: float) -> None:
        super().__init__("localhost", 80, max_retries)
        self.lock = threading.RLock()
        self.tombstones: dict[str, float] = {}
        self.tombstone_seconds = tombstone_seconds
        self.in_flight: dict[str, Task] = {}
        self.not_before: dict[str, float] = {}
        self.names: set[str] = set()  # tasks in queues or in flight (a set: the emulator scanned lists)
        self.due: dict[str, float] = {}  # epoch seconds (proto-plus converts schedule_time on every read)

    def _retire(self, name: str) -> None:
        self.tombstones[name] = time.monotonic()
        self.not_before.pop(name, None)
        self.names.discard(name)
        self.due.pop(name, None)

    def _known(self, name: str) -> bool:
        retired = self.tombstones.get(name)
        if retired is not None and time.monotonic() - retired < self.tombstone_seconds:
            return True
        return name in self.names

    def require_queue(self, name: str) -> None:
        if name not in self._queues:
            raise NotFound(f"Queue {name} does not exist.")

    def queue(self, name: str) -> Queue:
        with self.lock:
            self.require_queue(name)
            return self._queues[name]

    def create_task(self, queue: str, task: Task) -> Task:
        with self.lock:
            self.require_queue(queue)
            if task.name and self._known(task.name):
                raise AlreadyExists(f"Requested entity already exists: {task.name}")
            created = super().create_task(queue, task)
            self.names.add(created.name)
            self.due[created.name] = created.schedule_time.timestamp() if created.schedule_time else 0.0
            return created

    def get_task(self, name: str) -> Task:
        with self.lock:
            if name in self.in_flight:
                return self.in_flight[name]
            for task in self._queue_tasks.get(name.rsplit("/tasks/", 1)[0], []):
                if task.name == name:
                    return task
        raise NotFound(f"Task not found: {name}")

    def delete_task(self, name: str) -> None:
        with self.lock:
            tasks = self._queue_tasks.get(name.rsplit("/tasks/", 1)[0], [])
            for index, task in enumerate(tasks):
                if task.name == name:
                    del tasks[index]
                    self._retire(name)
                    return
        raise NotFound(f"Task not found: {name}")

    def list_tasks(self, queue_name: str) -> list[Task]:
        with self.lock:
            self.require_queue(queue_name)
            return [
                *self._queue_tasks[queue_name],
                *(t for n, t in self.in_flight.items() if n.startswith(queue_name + "/")),
            ]

    def purge_queue(self, queue_name: str) -> Queue:
        with self.lock:
            self.require_queue(queue_name)
            for task in self._queue_tasks[queue_name]:
                self._retire(task.name)
            return super().purge_queue(queue_name)

    def pause_queue(self, queue_name: str) -> Queue:
        with self.lock:
            self.require_queue(queue_name)
            return super().pause_queue(queue_name)

    def resume_queue(self, queue_name: str) -> Queue:
        with self.lock:
            self.require_queue(queue_name)
            return super().resume_queue(queue_name)

    # -- dispatching -------------------------------------------------------------------------------------------

    def take_due(self, queue: str, limit: int) -> list[Task]:
        """Due tasks of ``queue`` (up to ``limit``), moved from the queue to in flight."""
        now = time.time()
        monotonic = time.monotonic()
        taken: list[Task] = []
        with self.lock:
            if queue not in self._queues or self._queues[queue].state != Queue.State.RUNNING:
                return taken
            tasks = self._queue_tasks[queue]
            index = 0
            while index < len(tasks) and len(taken) < limit:
                task = tasks[index]
                due = self.due.get(task.name, 0.0) <= now
                if due and self.not_before.get(task.name, 0.0) <= monotonic:
                    del tasks[index]
                    self.in_flight[task.name] = task
                    taken.append(task)
                else:
                    index += 1
        return taken

    def finished(self, queue: str, task: Task, status: int) -> None:
        with self.lock:
            self.in_flight.pop(task.name, None)
            failed = not 200 <= status < 300
            retry = failed and (self._max_retries < 0 or task.dispatch_count <= self._max_retries)
            if retry and queue in self._queue_tasks:
                self.not_before[task.name] = time.monotonic() + min(
                    0.05 * 2 ** (task.dispatch_count - 1), 1.0
                )
                self._queue_tasks[queue].append(task)
            else:
                self._retire(task.name)


def dispatch(queue: str, task: Task, signer: Signer | None) -> int:
    """POST the task like Cloud Tasks: its headers plus X-CloudTasks-*, an OIDC token, the dispatch deadline."""
    task.dispatch_count += 1
    http = task.http_request
    headers = dict(http.headers)
    headers.update(
        {
            "X-CloudTasks-QueueName": queue.rsplit("/", 1)[-1],
            "X-CloudTasks-TaskName": task.name.rsplit("/", 1)[-1],
            "X-CloudTasks-TaskRetryCount": str(task.dispatch_count - 1),
            "X-CloudTasks-TaskExecutionCount": str(task.dispatch_count - 1),
            "X-CloudTasks-TaskETA": str(task.schedule_time.timestamp()) if task.schedule_time else "",
            "User-Agent": "Google-Cloud-Tasks",
        }
    )
    if signer is not None and http.oidc_token.service_account_email:
        audience = http.oidc_token.audience or http.url
        headers["Authorization"] = "Bearer " + signer.token(http.oidc_token.service_account_email, audience)
    deadline = task.dispatch_deadline.total_seconds() if task.dispatch_deadline else DEFAULT_DEADLINE
    req = request.Request(http.url, method=http.http_method.name or "POST", data=http.body, headers=headers)
    started = datetime.now(timezone.utc)
    try:
        with request.urlopen(req, timeout=deadline) as response:
            status = response.status
    except error.HTTPError as failure:
        status = failure.code
    except Exception:  # connection refused, reset, timeout: the dispatch failed
        status = 503
    task.last_attempt = Attempt(
        schedule_time=started,
        dispatch_time=started,
        response_time=datetime.now(timezone.utc),
        response_status={"code": status},
    )
    return status


class Dispatcher(threading.Thread):
    """Replaces the emulator's per-queue threads: dispatches due tasks concurrently, per queue up to its
    ``max_concurrent_dispatches``."""

    def __init__(self, state: State, signer: Signer | None, workers: int) -> None:
        super().__init__(daemon=True, name="dispatcher")
        self.state = state
        self.signer = signer
        self.pool = futures.ThreadPoolExecutor(max_workers=workers, thread_name_prefix="dispatch")
        self.running: dict[str, int] = {}
        self.lock = threading.Lock()
        self.stopping = threading.Event()

    def run(self) -> None:
        while not self.stopping.is_set():
            for queue_name, queue in list(self.state._queues.items()):
                limit = queue.rate_limits.max_concurrent_dispatches or 1000
                with self.lock:
                    free = limit - self.running.get(queue_name, 0)
                if free <= 0:
                    continue
                for task in self.state.take_due(queue_name, free):
                    with self.lock:
                        self.running[queue_name] = self.running.get(queue_name, 0) + 1
                    self.pool.submit(self._run, queue_name, task)
            self.stopping.wait(0.01)

    def _run(self, queue: str, task: Task) -> None:
        try:
            status = dispatch(queue, task, self.signer)
        except Exception:
            log.exception("dispatching %s failed", task.name)
            status = 500
        finally:
            with self.lock:
                self.running[queue] -= 1
        self.state.finished(queue, task, status)


class Servicer(emulator.Greeter):
    """The emulator's servicer plus GetTask and DeleteTask."""

    def GetTask(self, request_, context):
        try:
            return self._state.get_task(request_.name)
        except NotFound as failure:
            context.abort(failure.grpc_status_code, failure.message)

    def DeleteTask(self, request_, context):
        try:
            self._state.delete_task(request_.name)
            return empty_pb2.Empty()
        except NotFound as failure:
            context.abort(failure.grpc_status_code, failure.message)

    def RunTask(self, request_, context):
        try:
            with self._state.lock:
                task = self._state.get_task(request_.name)
                task.schedule_time = None  # due now; the dispatcher takes it on its next pass
                self._state.due[task.name] = 0.0
                return task
        except NotFound as failure:
            context.abort(failure.grpc_status_code, failure.message)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--port", type=int, default=0)
    parser.add_argument("--max-retries", type=int, default=-1)
    parser.add_argument("--tombstone-seconds", type=float, default=3600.0)
    parser.add_argument("--oidc-key", help="PEM private key signing the OIDC tokens")
    parser.add_argument("--oidc-kid", default="test-key")
    parser.add_argument("--workers", type=int, default=64, help="dispatch threads (all queues)")
    parser.add_argument("-q", "--quiet", action="store_true")
    args = parser.parse_args()
    logging.basicConfig(level=logging.ERROR if args.quiet else logging.INFO, stream=sys.stderr)
    logging.getLogger("gcloud-tasks-emulator").setLevel(logging.ERROR if args.quiet else logging.INFO)
    state = State(args.max_retries, args.tombstone_seconds)
    signer = Signer(args.oidc_key, args.oidc_kid) if args.oidc_key else None
    servicer = Servicer(state)
    server = grpc.server(futures.ThreadPoolExecutor(max_workers=32))
    add_CloudTasksServicer_to_server(servicer, server)
    port = server.add_insecure_port(f"127.0.0.1:{args.port}")
    server.start()
    dispatcher = Dispatcher(state, signer, args.workers)
    dispatcher.start()
    print(f"READY 127.0.0.1:{port}", flush=True)
    with contextlib.suppress(KeyboardInterrupt):
        sys.stdin.read()  # until the parent closes our stdin (or dies)
    dispatcher.stopping.set()
    server.stop(grace=0)


if __name__ == "__main__":
    main()
