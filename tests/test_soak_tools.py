"""The soak's fault injection does what bench/soak.py reports: the proxy's 500 window (refused, or committed first).

The soak itself runs for 20 minutes and is not part of ``make test``; these check its tools in a second.
"""

from __future__ import annotations

import subprocess
import sys
import time

import httpx

from testkit.backendprocess import ROOT
from testkit.fakels import FakeLabelStudio

CONFIG = '<View><Text name="t" value="$t"/><Choices name="c" toName="t"><Choice value="A"/></Choices></View>'


def test_the_fault_proxy_forwards_then_answers_500_for_its_window_committing_every_other_write():
    with FakeLabelStudio(CONFIG, [{"id": 1, "data": {"t": "x"}}], project_id=3) as ls:
        proxy = subprocess.Popen([sys.executable, "-m", "bench.faultproxy", "--target", ls.url], cwd=ROOT,
                                 stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)  # fmt: skip
        try:
            url = proxy.stdout.readline().strip()
            auth = {"Authorization": f"Token {ls.token}"}
            assert httpx.get(f"{url}/api/projects/3/", headers=auth).json()["label_config"] == CONFIG
            prediction = {"task": 1, "result": [], "model_version": "v1"}
            assert httpx.post(f"{url}/__fault", params={"seconds": 1.5}).json()["active"] is True
            assert httpx.get(f"{url}/api/projects/3/", headers=auth).status_code == 500
            imports = [httpx.post(f"{url}/api/projects/3/import/predictions", json=[prediction], headers=auth)
                       for _ in range(4)]  # fmt: skip
            assert [a.status_code for a in imports] == [500] * 4
            assert ls.imports == 2, "one write in two reaches Label Studio before its 500"
            state = httpx.get(f"{url}/__fault").json()
            assert state["committed_then_500"] == 2 and state["refused"] == 3
            time.sleep(1.6)
            assert httpx.get(f"{url}/api/projects/3/", headers=auth).status_code == 200  # the window closed
        finally:
            proxy.stdin.close()
            proxy.wait(10)
