"""A team remote, for real: `dvc push` to S3 (dvc-s3) and `dvc pull` into a fresh clone.

The S3 endpoint is moto's server (``moto.server.ThreadedMotoServer``) on 127.0.0.1, on a free
port, started and stopped by the test; credentials are dummy environment variables, the
endpoint is set with ``dvc remote modify team endpointurl`` — the commands of README's
"Sharing teachers and logits (DVC remote)". The pipeline is the tiny profile cut to two
teachers and two strategies (``helpers.tiny_params``): what is checked is that pulling brings
the teacher checkpoints and logits, so that a distillation sweep re-runs no teacher stage.
"""

import logging
import re
import socket

import boto3
import pytest
from moto.server import ThreadedMotoServer

from tests.helpers import env_for, make_repo, snapshot, tiny_params

pytestmark = pytest.mark.slow  # end to end: `pytest -m "not slow"` skips it

BUCKET = "mtkd-team"
URL = f"s3://{BUCKET}/cache"
# Dummy credentials (the environment's own AWS_* variables are dropped, so no profile is chosen).
AWS = {"AWS_ACCESS_KEY_ID": "testing", "AWS_SECRET_ACCESS_KEY": "testing", "AWS_DEFAULT_REGION": "us-east-1"}


def run(cmd: str, cwd, check: bool = True, **extra: str):
    import subprocess

    env = {k: v for k, v in env_for(cwd).items() if not k.startswith("AWS_")} | AWS | extra
    proc = subprocess.run(cmd, cwd=cwd, env=env, capture_output=True, text=True, shell=True)
    if check and proc.returncode != 0:
        raise AssertionError(f"{cmd} failed ({proc.returncode}):\n{proc.stdout[-3000:]}\n{proc.stderr[-5000:]}")
    return proc


def ran_stages(proc) -> set[str]:
    return set(re.findall(r"Running stage '([^']+)'", proc.stdout + proc.stderr))


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def endpoint():
    """An S3-compatible server on localhost with an empty bucket; stopped after the module."""
    logging.getLogger("werkzeug").setLevel(logging.WARNING)  # not a line per request
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()
    host, port = server.get_host_and_port()
    url = f"http://{host}:{port}"
    boto3.client("s3", endpoint_url=url, region_name="us-east-1", aws_access_key_id="testing",
                 aws_secret_access_key="testing").create_bucket(Bucket=BUCKET)
    yield url
    server.stop()


def objects(endpoint: str) -> list[str]:
    s3 = boto3.client("s3", endpoint_url=endpoint, region_name="us-east-1", aws_access_key_id="testing",
                      aws_secret_access_key="testing")
    return [o["Key"] for page in s3.get_paginator("list_objects_v2").paginate(Bucket=BUCKET)
            for o in page.get("Contents", [])]


def test_push_pull_and_sweep_through_s3(endpoint, tmp_path):
    repo = make_repo(tmp_path / "repo", tiny_params())
    run("dvc repro", repo)
    # README: the team remote.
    run(f"dvc remote add -d team {URL}", repo)
    run(f"dvc remote modify team endpointurl {endpoint}", repo)
    pushed = run("dvc push", repo)
    assert re.search(r"\d+ files? pushed", pushed.stdout), pushed.stdout
    keys = objects(endpoint)
    assert keys and all(k.startswith("cache/files/md5/") for k in keys), keys[:5]
    run("git add -A && git commit -qm 'tiny run, team remote'", repo)  # .dvc/config carries the remote

    clone = tmp_path / "clone"
    run(f"git clone -q {repo} {clone}", tmp_path)
    teachers = ["models/teachers/tiny_bert-rt", "models/teachers/tfidf_lr-rt", "logits/tiny_bert-rt.npz",
                "logits/tfidf_lr-rt.npz"]
    assert not any((clone / t).exists() for t in teachers)
    run("dvc pull", clone)
    assert snapshot(clone, teachers) == snapshot(repo, teachers) and snapshot(repo, teachers)
    assert ran_stages(run("dvc repro", clone)) == set()  # a no-op: everything came from S3

    sweep = run("dvc exp run -S distill.T=9", clone)
    out = sweep.stdout + sweep.stderr
    assert "Running stage 'train_teachers" not in out and "Running stage 'extract_logits" not in out, out[-3000:]
    for stage in ("train_teachers@tiny_bert-rt", "train_teachers@tfidf_lr-rt", "extract_logits@tiny_bert-rt",
                  "extract_logits@tfidf_lr-rt"):
        assert f"Stage '{stage}' didn't change, skipping" in out, stage
    assert ran_stages(sweep) == {"configure", "distill@average", "analyze"}  # `none` has no T: cached


def test_unreachable_endpoint_fails_naming_it(tmp_path):
    """Nothing listens on the endpoint: push and pull exit non-zero with DVC's error naming the endpoint/bucket."""
    repo = tmp_path / "repo"
    repo.mkdir()
    dead = f"http://127.0.0.1:{free_port()}"
    (repo / "data.txt").write_text("teachers\n")
    run("git init -q && dvc init -q && dvc add -q data.txt", repo)
    run(f"dvc remote add -d team {URL} && dvc remote modify team endpointurl {dead}", repo)
    # One attempt per request (botocore retries a refused connection for about 10 s by default).
    push = run("dvc push", repo, check=False, AWS_MAX_ATTEMPTS="1")
    assert push.returncode != 0
    assert f'Could not connect to the endpoint URL: "{dead}/{BUCKET}' in push.stderr, push.stderr
    assert "Traceback" not in push.stderr

    run("git add -A && git commit -qm data", repo)
    clone = tmp_path / "clone"
    run(f"git clone -q {repo} {clone}", tmp_path)
    pull = run("dvc pull", clone, check=False, AWS_MAX_ATTEMPTS="1")
    assert pull.returncode != 0
    assert f"failed to connect to s3 ({BUCKET}/cache/" in pull.stderr and dead in pull.stderr, pull.stderr
    assert not (clone / "data.txt").exists()
