"""Schedules, re-audits, reports and webhooks over HTTP, on a finished audit: what an owner sets
and reads back, what is skipped, and that nobody else reaches them."""

from __future__ import annotations

from core.services.webhooks import deliver_due
from core.store import AuditJob, session_scope


def test_a_schedule_is_set_read_changed_and_removed(client, alice, bob, finished_job):
    path = f"/datasets/{finished_job.dataset_id}/schedule"
    created = client.put(path, json={"cron": "0 3 * * 1", "audit": {"epochs": 2}}, headers=alice)
    assert created.status_code == 200, created.text
    assert created.json()["config"]["epochs"] == 2 and created.json()["next_run_at"].endswith("03:00:00Z")

    changed = client.put(path, json={"interval_seconds": 3600, "warm_start": True}, headers=alice).json()
    assert (changed["cron"], changed["interval_seconds"], changed["warm_start"]) == (None, 3600, True)
    assert client.get(path, headers=alice).json() == changed
    assert client.get(path, headers=bob).status_code == 404

    bad = client.put(path, json={"cron": "every monday"}, headers=alice)
    assert bad.status_code == 422 and "invalid cron expression" in bad.json()["detail"]
    assert client.delete(path, headers=alice).status_code == 204
    assert client.get(path, headers=alice).status_code == 404


def test_a_reaudit_of_an_audited_version_is_skipped_unless_forced(client, alice, finished_job, take_queued_tasks):
    path = f"/datasets/{finished_job.dataset_id}/reaudits"
    skipped = client.post(path, json={}, headers=alice).json()
    assert skipped["job"] is None and "nothing changed: version 1 is audited already" in skipped["skipped"]

    forced = client.post(path, json={"force": True, "warm_start": True}, headers=alice).json()["job"]
    assert (forced["previous_job_id"], forced["warm_start"], forced["status"]) == (finished_job.job_id, True, "queued")
    assert forced["config"]["epochs"] == finished_job.num_epochs  # the previous job's configuration
    assert [task["args"] for task in take_queued_tasks()][-1] == [forced["id"]]


def test_a_reaudit_or_schedule_changes_only_the_training_options_it_names(client, alice, finished_job, sessions):
    with session_scope(sessions) as session:
        job = session.get(AuditJob, finished_job.job_id)
        lilaw = {**job.config["lilaw"], "clamp": True}
        job.config = {**job.config, "batch_size": 32, "inject_noise": "uniform:0.2", "lilaw": lilaw}
    dataset = finished_job.dataset_id

    started = client.post(f"/datasets/{dataset}/reaudits", json={"force": True, "audit": {"epochs": 1}}, headers=alice)
    config = started.json()["job"]["config"]
    assert (config["epochs"], config["batch_size"], config["inject_noise"], config["lilaw"]["clamp"]) == (
        1, 32, "uniform:0.2", True,
    )  # fmt: skip
    schedule = client.put(
        f"/datasets/{dataset}/schedule", json={"cron": "0 3 * * 1", "audit": {"meta_batch_size": 8}}, headers=alice
    ).json()
    lilaw = schedule["config"]["lilaw"]
    assert (schedule["config"]["batch_size"], lilaw["meta_batch_size"], lilaw["clamp"]) == (32, 8, True)


def test_the_report_of_a_first_audit_lists_every_suspect_as_new(client, alice, bob, finished_job):
    report = client.get(f"/jobs/{finished_job.job_id}/report", params={"limit": 5}, headers=alice).json()
    suspected = int((finished_job.audit.result.scores["aum"] > 0).sum())
    assert (report["previous_job_id"], report["num_suspected"]) == (None, suspected)
    assert report["counts"]["newly_suspected"] == suspected and report["counts"]["new_samples"] == finished_job.num_samples
    ranks = [sample["rank"] for sample in report["samples"]["newly_suspected"]]
    assert ranks == sorted(ranks) and len(ranks) == min(5, suspected)
    assert client.get(f"/jobs/{finished_job.job_id}/report", headers=bob).status_code == 404


def test_a_webhook_keeps_its_secret_and_lists_its_deliveries(client, alice, bob, finished_job, sessions):
    path = f"/datasets/{finished_job.dataset_id}/webhook"
    created = client.put(path, json={"url": "http://127.0.0.1:9/hook"}, headers=alice).json()
    assert len(created["secret"]) >= 32
    assert "secret" not in client.get(path, headers=alice).json()
    assert client.get(path, headers=bob).status_code == 404
    bad = client.put(path, json={"url": "not a url"}, headers=alice)
    assert bad.status_code == 422 and "http(s)://host" in bad.json()["detail"]

    ping = client.post(f"{path}/test", headers=alice)
    assert ping.status_code == 201 and ping.json()["status"] == "pending"
    deliver_due(sessions, allow_private_hosts=True)  # port 9 refuses: a failed attempt, retried later
    [delivery] = client.get(f"{path}/deliveries", headers=alice).json()
    assert (delivery["event"], delivery["attempts"], delivery["status"]) == ("ping", 1, "pending")
    assert delivery["last_error"]
    retried = client.post(f"{path}/deliveries/{delivery['id']}/retry", headers=alice).json()
    assert (retried["attempts"], retried["status"]) == (0, "pending")
