"""Soak: mixed traffic with faults on a fixed schedule against `make run`'s stack, a scripted LLM and a real Label
Studio 1.23.2. Not part of ``make test``.

    python -m bench.soak                              # 20 minutes, a 2,000-task bulk run (about 25 minutes in all)
    python -m bench.soak --minutes 4 --tasks 300      # a rehearsal; the schedule scales with --minutes

What runs (every part a real process on loopback):
- **the stack** as ``make run`` starts it (``testkit/runstack.py``): Redis with its append-only file, the supervised
  RQ worker, gunicorn with 2 workers; basic auth and a webhook secret set, as in production. ``EMBEDDED_LLM=0``: the
  LLM is the scripted one below.
- **the scripted LLM** (``bench/fakellm_proc.py --responder magic``, 0.2 s per answer): the labeller is right only
  under the instruction the proposer proposes, so a training run has something real to promote.
- **a real Label Studio** with one project of ``--tasks`` tasks, connected to the backend with basic auth and the
  webhook secret; the backend reaches it through ``bench/faultproxy.py``, which can make it answer 500.

Traffic, all through the whole run: ``--clients`` threads posting ``/predict`` as Label Studio does (1-4 tasks of
the project, its uid and label config), one annotator creating annotations through the SDK (Label Studio sends each
as an ``ANNOTATION_CREATED`` webhook), two training runs started from Label Studio (``ml.train``) and a bulk run of
every task (``POST /projects/<id>/predict``). Events and faults at fixed fractions of the run (at 20 minutes: 1:00
the bulk run, then the RQ worker and its work horse ``kill -9`` while a chunk is in flight, 2:00 Label Studio
answering 500 for 30 s, 3:00 Redis restarted, 4:00 a gunicorn worker ``kill -9``, 6:00 and 12:00 training, 20:00
traffic stops), so the faults land while the bulk run posts; the first training run promotes, and with
``REPREDICT_AFTER_PROMOTE=1`` that queues a second run over the unlabelled tasks. Then, as the README says to
resume a run a crash cut short, one more bulk run; when no job is left the predictions are read back through the
SDK.

Reported (``bench/results/soak.json``, and the table in bench/README.md): the share of ``/predict`` answers that
were 5xx (and connections dropped); predictions lost (a task without a prediction of the final live version),
duplicated (two predictions of one version on one task) or stored empty; policies half-promoted (the live pointer,
its policy body, the history and what every web worker serves, checked against each other); RSS of every process at
the start (after one minute of traffic) and at the end. Goal: 0 lost, 0 duplicated, 0 empty, 0 half-promoted, RSS
growth under 10 % for the backend's own processes.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import random
import subprocess
import sys
import tempfile
import threading
import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

import httpx

from testkit.backendprocess import ROOT
from testkit.labelstudio import LabelStudioServer, ls_venv
from testkit.processes import descendants, kill_tree
from testkit.runstack import RunStack, rss_mb

HERE = Path(__file__).resolve().parent
INTENTS = ["Greeting", "Billing", "Complaint", "Cancellation", "Order_Status", "Technical_Support"]
CONFIG = (
    '<View><Text name="text" value="$text"/><Choices name="intent" toName="text" choice="single">'
    + "".join(f'<Choice value="{label}"/>' for label in [*INTENTS, "Other"])
    + "</Choices></View>"
)
AUTH = ("soak", "soak-pass-" + os.urandom(4).hex())
SECRET = "soak-hook-" + os.urandom(4).hex()
GOALS = {"lost": 0, "duplicated": 0, "empty": 0, "half_promoted": 0, "rss_growth": 0.10}
# The backend's own processes, judged against the RSS goal; Redis and Label Studio hold data that grows with the
# run (claims, events, 2,000 tasks' predictions), so their RSS is reported but not judged.
JUDGED = ("gunicorn master", "gunicorn worker", "rq worker")
# When each event happens, as a fraction of the run (at 20 minutes: 2:00, 3:00, ...).
SCHEDULE = (
    (0.05, "bulk run"),
    (0.06, "kill rq worker mid-chunk"),
    (0.10, "label studio 500 for 30 s"),
    (0.15, "restart redis"),
    (0.20, "kill gunicorn worker"),
    (0.30, "train"),
    (0.60, "train"),
    (1.00, "stop traffic"),
)


def task_text(i: int) -> str:
    intent = INTENTS[i % len(INTENTS)]
    return f"Message {i}: the customer writes about {intent.replace('_', ' ').lower()} and wants an answer."


@dataclass
class Tally:
    lock: threading.Lock = field(default_factory=threading.Lock)
    counts: Counter = field(default_factory=Counter)
    latencies: list[float] = field(default_factory=list)

    def add(self, *keys: str, latency: float | None = None) -> None:
        with self.lock:
            for key in keys:
                self.counts[key] += 1
            if latency is not None:
                self.latencies.append(latency)


class Soak:
    def __init__(self, args: argparse.Namespace) -> None:
        self.args = args
        self.duration = args.minutes * 60
        self.stop = threading.Event()
        self.ended = threading.Event()  # every job done: the last RSS sample, then the sampler stops
        self.final_at = float("inf")
        self.predict = Tally()
        self.annotate = Tally()
        self.faults: list[dict] = []
        self.rss: dict[str, list[tuple[float, int, float]]] = {}
        self.jobs: dict[str, list[str]] = {"train": [], "bulk": []}
        self.t0 = time.monotonic()
        self.workdir = Path(tempfile.mkdtemp(prefix="soak-"))
        self.helpers: list[subprocess.Popen] = []

    # --- set-up ---------------------------------------------------------------------------------------------------

    def helper(self, *argv: str) -> tuple[subprocess.Popen, str]:
        """A helper process that prints its URL on its first line and serves until its stdin closes."""
        env = {**os.environ, "PYTHONPATH": str(ROOT)}
        proc = subprocess.Popen([sys.executable, "-m", *argv], cwd=ROOT, stdin=subprocess.PIPE,
                                stdout=subprocess.PIPE, text=True, env=env)  # fmt: skip
        self.helpers.append(proc)
        return proc, proc.stdout.readline().strip()

    def log(self, message: str) -> None:
        print(f"[{self.now():7.1f} s] {message}", flush=True)

    def now(self) -> float:
        return time.monotonic() - self.t0

    def http(self) -> httpx.Client:
        return httpx.Client(base_url=self.stack.url, auth=AUTH, timeout=120)

    def start(self) -> None:
        if os.environ.get("E2E_LABEL_STUDIO_URL"):  # one kept running (python -m testkit.labelstudio), for rehearsals
            self.ls = LabelStudioServer(os.environ["E2E_LABEL_STUDIO_URL"], os.environ["E2E_LABEL_STUDIO_TOKEN"])
        else:
            venv = ls_venv()
            if venv is None:
                raise SystemExit("Label Studio is not installed: run scripts/install_labelstudio.sh or set LS_VENV")
            self.log("starting Label Studio")
            self.ls = LabelStudioServer.launch(venv)
        self.proxy, self.proxy_url = self.helper("bench.faultproxy", "--target", self.ls.url)
        self.llm, llm_url = self.helper("bench.fakellm_proc", "--delay", str(self.args.llm_delay), "--responder",
                                        "magic")  # fmt: skip
        self.log(f"Label Studio {self.ls.url} (through {self.proxy_url}), scripted LLM {llm_url}")
        tasks = [{"text": task_text(i)} for i in range(self.args.tasks)]
        self.project, self.task_ids = self.ls.create_project(CONFIG, tasks, title="soak")
        self.texts = dict(zip(self.task_ids, (t["text"] for t in tasks), strict=True))
        self.uid = f"{self.project.id}.{int(self.project.created_at.timestamp())}"
        env = {
            "EMBEDDED_LLM": "0", "LLM_BASE_URL": llm_url, "LLM_MODEL": "fake", "LLM_PROVIDER": "openai",
            "LLM_API_KEY": "not-needed", "LLM_CONCURRENCY": "16", "LLM_GLOBAL_CONCURRENCY": "16",
            "LLM_MAX_RETRIES": "2", "LABEL_STUDIO_URL": self.proxy_url, "LABEL_STUDIO_API_KEY": self.ls.token,
            "BASIC_AUTH_USER": AUTH[0], "BASIC_AUTH_PASS": AUTH[1], "WEBHOOK_SECRET": SECRET,
            "RETRAIN_EVERY_N": "0", "REPREDICT_AFTER_PROMOTE": "1", "OPTIMIZE_BUDGET": "400", "TRAIN_MIN_GOLD": "8",
            "LOG_FORMAT": "text", "LOG_LEVEL": "INFO",
        }  # fmt: skip
        self.stack = RunStack(self.workdir / "var", env, self.workdir / "make-run.log").start()
        self.stack.wait_healthy()
        self.ml = self.ls.connect_with_secret(self.project.id, self.stack.url, AUTH, SECRET)
        self.log(f"stack up on {self.stack.url}; project {self.uid} with {len(self.task_ids)} tasks; logs in "
                 f"{self.workdir}")  # fmt: skip

    # --- traffic ----------------------------------------------------------------------------------------------

    def predict_client(self, seed: int) -> None:
        rng = random.Random(seed)
        with self.http() as client:
            while not self.stop.is_set():
                picked = rng.sample(self.task_ids, rng.randint(1, 4))
                body = {"tasks": [{"id": t, "data": {"text": self.texts[t]}} for t in picked],
                        "project": self.uid, "label_config": CONFIG,
                        "params": {"login": None, "password": None, "context": None}}  # fmt: skip
                started = time.monotonic()
                try:
                    answer = client.post("/predict", json=body)
                except httpx.HTTPError as exc:
                    self.predict.add("requests", "dropped", f"dropped {type(exc).__name__}")
                    time.sleep(0.5)
                    continue
                keys = ["requests", f"{answer.status_code // 100}xx"]
                if answer.status_code == 200:
                    results = answer.json()["results"]
                    if len(results) != len(picked):
                        keys.append("wrong result count")
                    self.predict.counts["tasks answered"] += len(results)
                    self.predict.counts["tasks answered empty"] += sum(1 for r in results if not r.get("result"))
                self.predict.add(*keys, latency=time.monotonic() - started)
                time.sleep(rng.uniform(0.1, 0.5))

    def annotator(self) -> None:
        """Annotations through the SDK, about one every 3 s: Label Studio posts each to /webhook itself."""
        for task in self.task_ids[: self.args.annotate]:
            if self.stop.is_set():
                return
            intent = INTENTS[self.task_ids.index(task) % len(INTENTS)]
            result = [{"from_name": "intent", "to_name": "text", "type": "choices", "value": {"choices": [intent]}}]
            try:
                self.ls.client.annotations.create(id=task, result=result)
                self.annotate.add("created")
            except Exception as exc:  # counted, and the soak goes on
                self.annotate.add("failed", f"failed {type(exc).__name__}")
            self.stop.wait(3)

    def sample_rss(self) -> None:
        """Every process's RSS every 15 s, until the end (``self.ended``), and once more then."""
        while True:
            final = self.ended.is_set()
            roles = self.stack.roles()
            roles["fake LLM"] = [self.llm.pid]
            roles["fault proxy"] = [self.proxy.pid]
            if self.ls.process is not None:
                roles["Label Studio"] = [self.ls.process.pid, *descendants(self.ls.process.pid)]
            at = self.now()
            for role, pids in roles.items():
                for pid in pids:
                    mb = rss_mb(pid)
                    if mb is not None:
                        self.rss.setdefault(role, []).append((round(at, 1), pid, round(mb, 1)))
            self._note_jobs()
            if final:
                return
            self.ended.wait(15)

    def _note_jobs(self) -> None:
        """Runs the backend started by itself (the re-prediction a promotion queues), for the report."""
        try:
            with self.http() as client:
                listed = client.get("/jobs").json().get("jobs", [])
        except (httpx.HTTPError, ValueError):
            return
        for job in listed:
            kind = {"bulk": "bulk", "train": "train"}.get(job.get("kind"))
            if kind and job.get("id") and job["id"] not in self.jobs[kind]:
                self.jobs[kind].append(job["id"])

    # --- events and faults -------------------------------------------------------------------------------------

    def fault(self, name: str, **detail) -> None:
        entry = {"at_s": round(self.now(), 1), "fault": name, **detail}
        self.faults.append(entry)
        self.log(f"{name}: {detail.get('detail', '')}")

    def train(self) -> None:
        before = self._train_jobs()
        self.ls.client.ml.train(self.ml.id)
        job = None
        deadline = time.monotonic() + 30
        while job is None and time.monotonic() < deadline:
            new = self._train_jobs() - before
            job = next(iter(new), None)
            time.sleep(0.5)
        self.jobs["train"].append(job or "none")
        self.fault("training run", job=job, detail=f"START_TRAINING from Label Studio, job {job}")

    def _train_jobs(self) -> set[str]:
        with self.http() as client:
            events = client.get(f"/projects/{self.project.id}/events", params={"limit": 1000}).json()["events"]
        return {e["job"] for e in events if e.get("action") == "START_TRAINING" and e.get("job")}

    def kill_gunicorn_worker(self) -> None:
        workers = self.stack.roles()["gunicorn worker"]
        victim = workers[0]
        os.kill(victim, 9)
        self.fault("kill -9 gunicorn worker", pid=victim, detail=f"worker {victim} of {len(workers)}")

    def bulk(self, reason: str) -> str:
        with self.http() as client:
            answer = client.post(f"/projects/{self.project.id}/predict")
        job = answer.json().get("job", "") if answer.status_code == 202 else ""
        self.jobs["bulk"].append(job)
        self.fault("bulk run", job=job, detail=f"{reason}: POST /projects/{self.project.id}/predict -> "
                                               f"{answer.status_code} job {job}")  # fmt: skip
        return job

    def kill_rq_worker_mid_chunk(self, timeout: float = 120) -> None:
        """kill -9 the RQ worker and its work horse while the horse is running a bulk chunk."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            roles = self.stack.roles()
            if roles["rq work horse"] and self._running_chunk():
                worker = roles["rq worker"][0]
                chunk = self._running_chunk()
                kill_tree(worker)
                horse = roles["rq work horse"]
                self.fault("kill -9 rq worker mid-chunk", pid=worker, chunk=chunk,
                           detail=f"worker {worker} and its work horse {horse} during {chunk}")  # fmt: skip
                return
            time.sleep(0.2)
        self.fault("kill -9 rq worker mid-chunk", detail=f"no chunk in flight within {timeout:.0f} s: not done")

    def _running_chunk(self) -> str | None:
        """A bulk run with chunks in flight (its plan is done and some tasks are handled), or None."""
        try:
            with self.http() as client:
                jobs = client.get("/jobs").json()
        except (httpx.HTTPError, ValueError):
            return None
        for job in jobs.get("jobs", []):
            active = str(job.get("phase") or "").split(" of ")[0]
            if job.get("kind") == "bulk" and active.isdigit() and int(active) > 0 and job.get("done"):
                return f"run {job['id']} ({job['phase']}, {job['done']} of {job['total']} tasks done)"
        return None

    def restart_redis(self) -> None:
        down = self.stack.restart_redis()
        self.fault("restart redis", down_s=round(down, 2), detail=f"SIGTERM, then scripts/ensure_redis.sh with "
                                                                  f"the same AOF; down {down:.1f} s")  # fmt: skip

    def label_studio_500(self) -> None:
        httpx.post(self.proxy_url + "/__fault", params={"seconds": 30}, timeout=10)
        self.fault("label studio 500 for 30 s", detail="every request through the proxy answers 500; one write in two "
                                                       "is committed first")  # fmt: skip

    def run_schedule(self) -> None:
        actions = {
            "train": self.train,
            "kill gunicorn worker": self.kill_gunicorn_worker,
            "bulk run": lambda: self.bulk("the run"),
            "kill rq worker mid-chunk": self.kill_rq_worker_mid_chunk,
            "restart redis": self.restart_redis,
            "label studio 500 for 30 s": self.label_studio_500,
            "stop traffic": self.stop.set,
        }
        for fraction, name in SCHEDULE:
            self.stop.wait(max(0.0, fraction * self.duration - self.now()))
            if self.stop.is_set() and name != "stop traffic":
                break
            try:
                actions[name]()
            except Exception as exc:  # reported, not fatal
                self.fault(name, detail=f"could not be done: {exc!r}")

    # --- the end -----------------------------------------------------------------------------------------------

    def idle(self) -> tuple[bool, str]:
        """No job queued, none running on a live worker, no training run reserved. A job whose worker was killed
        stays "started" in RQ until its cleanup moves it to failed (minutes later), so it does not count."""
        from rq import Queue, Worker
        from rq.job import Job
        from rq.registry import StartedJobRegistry

        services = self.services()
        queue = Queue(services.settings.rq_queue, connection=services.rq_redis)
        workers = {w.name for w in Worker.all(queue=queue)}
        running = []
        for job_id in StartedJobRegistry(queue=queue).get_job_ids():
            with contextlib.suppress(Exception):
                if Job.fetch(job_id, connection=services.rq_redis).worker_name in workers:
                    running.append(job_id)
        project = services.projects.resolve(self.uid)
        training = services.coalescer.status(project)
        reserved = training.get("queued") or training.get("followup")
        busy = queue.count or running or reserved
        return not busy, f"queued {queue.count}, running {running}, reserved {reserved}"

    def quiesce(self, timeout: float) -> dict:
        """Wait until :meth:`idle` three looks in a row, 2 s apart (a job just taken from the queue is in neither the
        queue nor the started registry for a moment); the bulk and training runs' final views."""
        started, state, quiet = time.monotonic(), "", 0
        while time.monotonic() < started + timeout and quiet < 3:
            time.sleep(2)
            try:
                done, state = self.idle()
            except Exception as exc:  # Redis restarting, say: look again
                done, state = False, repr(exc)
            quiet = quiet + 1 if done else 0
        self.log(f"quiet after {time.monotonic() - started:.0f} s ({state})")
        with self.http() as client:
            return {job: client.get(f"/jobs/{job}").json() for job in self.jobs["bulk"] + self.jobs["train"]
                    if job and job != "none"}  # fmt: skip

    def services(self):
        from optimizer.runtime.services import Services
        from optimizer.settings import Settings

        if not hasattr(self, "_services"):
            self._services = Services(Settings(_env_file=None, redis_url=self.stack.redis_url, llm_model="fake"))
        return self._services

    def readback(self) -> dict:
        live = self.ls.ml_backend(self.ml.id)["model_version"]
        with self.http() as client:
            served = client.post("/setup", json={"project": self.uid, "schema": CONFIG}).json()["model_version"]
        predictions = self.ls.client.predictions.list(project=self.project.id)
        by_task: dict[int, list] = {t: [] for t in self.task_ids}
        for p in predictions:
            by_task.setdefault(p.task, []).append(p)
        pairs = Counter((p.task, p.model_version) for p in predictions)
        versions = Counter(p.model_version for p in predictions)
        return {
            "live_version": served,
            "label_studio_version": live,
            "predictions": len(predictions),
            "by_version": dict(versions),
            "lost": sum(1 for t in self.task_ids if not any(p.model_version == served for p in by_task[t])),
            "duplicated": sum(n - 1 for n in pairs.values() if n > 1),
            "empty": sum(1 for p in predictions if not p.result),
        }

    def half_promoted(self) -> list[str]:
        """The live pointer, its policy body, the history and what every web worker serves must agree."""
        services = self.services()
        project = services.projects.resolve(self.uid)
        problems = []
        live = services.store.current_version(project)
        keys = services.store.keys
        if not services.redis.exists(keys.policy(live)):
            problems.append(f"live version {live} has no policy body")
        entries = services.history.entries(project)
        marked = [e.version for e in entries if e.live]
        if marked != [live]:
            problems.append(f"history marks {marked} live, the pointer says {live}")
        for entry in entries:
            if not services.redis.exists(keys.policy(entry.version)):
                problems.append(f"history lists {entry.version} without its policy body")
        with httpx.Client(base_url=self.stack.url, auth=AUTH, timeout=30) as client:
            served = {client.post("/setup", json={"project": self.uid, "schema": CONFIG}).json()["model_version"]
                      for _ in range(20)}  # fmt: skip
        if served != {live}:
            problems.append(f"web workers serve {sorted(served)}, the pointer says {live}")
        return problems

    def rss_report(self) -> dict:
        """Per process: its first sample after one minute of traffic (for one a fault replaced, after its own first
        minute) against its last."""
        warm = min(60.0, self.duration * 0.05)
        report = {}
        for role, samples in self.rss.items():
            pids = {pid for _, pid, _ in samples}
            for pid in sorted(pids):
                mine = [(t, mb) for t, p, mb in samples if p == pid]
                if mine[-1][0] < self.final_at - 1:  # gone before the end (killed, or a work horse): not judged
                    continue
                born = mine[0][0]
                start = next(((t, mb) for t, mb in mine if t >= max(warm, born + warm)), mine[0])
                name = role if len(pids) == 1 else f"{role} {pid}"
                report[name] = {"pid": pid, "role": role, "from_s": start[0], "start_mb": start[1],
                                "end_mb": mine[-1][1], "growth": mine[-1][1] / start[1] - 1,
                                "replaced": born > warm}  # fmt: skip
        return report

    def run(self) -> dict:
        load = os.getloadavg()
        started = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
        self.start()
        self.t0 = time.monotonic()
        threads = [
            threading.Thread(target=self.predict_client, args=(i,), daemon=True) for i in range(self.args.clients)
        ]
        threads += [threading.Thread(target=self.annotator, daemon=True)]
        sampler = threading.Thread(target=self.sample_rss, daemon=True)
        for t in [*threads, sampler]:
            t.start()
        self.run_schedule()
        for t in threads:
            t.join(180)
        self.log(f"traffic stopped: {dict(self.predict.counts)}; annotations {dict(self.annotate.counts)}")
        first = self.quiesce(timeout=900)
        before = self.readback()
        self.log(f"after the faulted runs: {before}")
        self.bulk("resume (README: the next run finishes what a crash left)")
        views = self.quiesce(timeout=900)
        self.final_at = self.now()
        self.ended.set()
        sampler.join(60)
        after = self.readback()
        problems = self.half_promoted()
        rss = self.rss_report()
        self.log(f"read back: {after}; half-promoted: {problems}")
        status = self.stack.interrupt()
        left = self.stack.leftovers()
        self.stack.force_stop()
        judged = {k: v for k, v in rss.items() if v["role"] in JUDGED}
        worst = max(judged, key=lambda k: judged[k]["growth"]) if judged else "-"
        counts = self.predict.counts
        hooks = sum(1 for line in self.stack.output(10**8).splitlines() if "POST /webhook 201" in line)
        return {
            "started": started,
            "duration_s": round(self.final_at, 1),
            "cpus": os.cpu_count(),
            "load": load,
            "load_after": os.getloadavg(),
            "settings": {
                "minutes": self.args.minutes,
                "tasks": self.args.tasks,
                "clients": self.args.clients,
                "llm_delay_s": self.args.llm_delay,
                "annotate": self.args.annotate,
            },
            "goals": GOALS,
            "summary": {
                "predict_requests": counts["requests"],
                "predict_5xx": counts["5xx"],
                "predict_5xx_share": counts["5xx"] / max(1, counts["requests"]),
                "predict_dropped": counts["dropped"],
                "lost": after["lost"],
                "duplicated": after["duplicated"],
                "empty": after["empty"],
                "half_promoted": len(problems),
                "rss_growth_worst": judged[worst]["growth"] if judged else 0.0,
                "rss_growth_worst_process": worst,
                "traffic": f"{counts['requests']:,} /predict requests from {self.args.clients} clients, "
                f"{self.annotate.counts['created']} annotations (webhook requests answered 201: {hooks}), "
                f"{len(self.jobs['train'])} training runs, a {self.args.tasks:,}-task bulk run",
            },
            "predict": {**dict(counts), "latency_s_median": _median(self.predict.latencies)},
            "annotations": dict(self.annotate.counts),
            "webhooks_answered_201": hooks,
            "faults": self.faults,
            "jobs": {"ids": self.jobs, "after_traffic": first, "final": views},
            "before_resume": before,
            "readback": after,
            "half_promoted": problems,
            "rss": rss,
            "rss_samples": self.rss,
            "ctrl_c": {"make_status": status, "left_running": left},
        }

    def close(self) -> None:
        with contextlib.suppress(Exception):
            self.stack.force_stop()
        for proc in self.helpers:
            with contextlib.suppress(Exception):
                proc.stdin.close()
                proc.terminate()
                proc.wait(10)
        with contextlib.suppress(Exception):
            self.ls.stop()


def _median(values: list[float]) -> float | None:
    ordered = sorted(values)
    return round(ordered[len(ordered) // 2], 3) if ordered else None


def verdicts(result: dict) -> list[str]:
    s, goals = result["summary"], result["goals"]
    misses = [f"{name}: {s[name]} (goal {goals[name]})" for name in ("lost", "duplicated", "empty", "half_promoted")
              if s[name] > goals[name]]  # fmt: skip
    if s["rss_growth_worst"] >= goals["rss_growth"]:
        misses.append(f"RSS growth {s['rss_growth_worst']:+.1%} in {s['rss_growth_worst_process']}")
    return misses


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.soak", description=__doc__.splitlines()[0])
    parser.add_argument("--minutes", type=float, default=20)
    parser.add_argument("--tasks", type=int, default=2000)
    parser.add_argument("--clients", type=int, default=3, help="threads posting /predict")
    parser.add_argument("--annotate", type=int, default=400, help="tasks the annotator labels (one every 3 s)")
    parser.add_argument("--llm-delay", type=float, default=0.2, help="seconds the scripted LLM takes per answer")
    parser.add_argument("--out", type=Path, default=HERE / "results" / "soak.json")
    args = parser.parse_args(argv)
    soak = Soak(args)
    try:
        result = soak.run()
    finally:
        soak.close()
    args.out.write_text(json.dumps(result, indent=1) + "\n")
    from bench.tables import soak_table

    print(soak_table(result))
    misses = verdicts(result)
    print(f"\nwrote {args.out}; " + ("goal met" if not misses else "goal missed: " + "; ".join(misses)))
    return 1 if misses else 0


if __name__ == "__main__":
    sys.exit(main())
