"""Team review over HTTP on a finished audit of noisy digits: the lead (alice's own key) assigns
samples by rank range, class and count; reviewers see only their samples; blind double review
hides the other reviewer's verdict until one decides; a conflict waits for the adjudicator, whose
verdict becomes the sample's agreed one; comments; progress, speed and kappa."""

from __future__ import annotations

import csv
import io

import pytest
from sklearn.metrics import cohen_kappa_score

from api.auth import create_api_key
from core.store import session_scope


@pytest.fixture
def team(sessions) -> dict[str, dict[str, str]]:
    """Three reviewers of alice's: keys of alice's with reviewer names."""
    with session_scope(sessions) as session:
        return {
            name: {"Authorization": f"Bearer {create_api_key(session, 'alice', reviewer=name)}"}
            for name in ("ana", "ben", "cy")
        }


def assign(client, headers, job_id: int, expected: int = 201, **body) -> dict:
    response = client.post(f"/jobs/{job_id}/assignments", json=body, headers=headers)
    assert response.status_code == expected, response.text
    return response.json()


def decide(client, headers, job_id: int, sample_index: int, verdict: str, label: str | None = None) -> dict:
    body = {"sample_index": int(sample_index), "verdict": verdict, "label": label}
    response = client.post(f"/jobs/{job_id}/decisions", json=body, headers=headers)
    assert response.status_code == 201, response.text
    return response.json()


def queue(client, headers, job_id: int, **params) -> dict:
    response = client.get(f"/jobs/{job_id}/review-queue", params={"limit": 500, **params}, headers=headers)
    assert response.status_code == 200, response.text
    return response.json()


def ranked(client, headers, job_id: int) -> list[dict]:
    return queue(client, headers, job_id, status="all", scope="all")["items"]


def other(label: str) -> str:
    return str((int(label) + 1) % 10)


def test_the_lead_assigns_by_rank_range_class_and_count(client, alice, team, finished_job):
    job_id = finished_job.job_id
    order = ranked(client, alice, job_id)

    result = assign(client, alice, job_id, reviewers=["ana", "ben"], rank_from=1, rank_to=10)
    assert result == {"samples": 10, "assignments": 10, "per_reviewer": {"ana": 5, "ben": 5}}
    listed = client.get(f"/jobs/{job_id}/assignments", headers=alice).json()
    assert [entry["rank"] for entry in listed] == list(range(1, 11))
    assert {entry["sample_index"] for entry in listed} == {item["sample_index"] for item in order[:10]}

    # A reviewer's queue is their assigned samples only; the lead's is every sample.
    ana_items = queue(client, team["ana"], job_id)["items"]
    assert [item["rank"] for item in ana_items] == [e["rank"] for e in listed if e["reviewer"] == "ana"]
    assert queue(client, team["ana"], job_id)["progress"]["total"] == 5
    assert len(queue(client, alice, job_id)["items"]) == len(order)

    # A class: its samples that have fewer reviewers than asked for (here: none yet).
    label = order[0]["label"]
    of_class = [item for item in order[10:] if item["label"] == label]
    result = assign(client, alice, job_id, reviewers=["cy"], label=label)
    assert result["samples"] == len(of_class) > 0
    cy_items = queue(client, team["cy"], job_id)["items"]
    assert {item["sample_index"] for item in cy_items} == {item["sample_index"] for item in of_class}

    # The next 5 samples nobody is assigned, most suspicious first.
    taken = {e["sample_index"] for e in client.get(f"/jobs/{job_id}/assignments", headers=alice).json()}
    expected = [item["sample_index"] for item in order if item["sample_index"] not in taken][:5]
    assert assign(client, alice, job_id, reviewers=["ana"], count=5)["samples"] == 5
    mine = client.get(f"/jobs/{job_id}/assignments", params={"of": "ana"}, headers=alice).json()
    assert set(expected) <= {entry["sample_index"] for entry in mine}
    assert len(mine) == 10

    # Only the lead assigns, to reviewers that exist, with a selection; blind needs k >= 2.
    assert client.post(f"/jobs/{job_id}/assignments", json={"reviewers": ["ben"], "count": 1}, headers=team["ana"]).status_code == 403
    assert "no reviewer named 'dan'" in assign(client, alice, job_id, 422, reviewers=["dan"], count=1)["detail"]
    assert "rank range" in assign(client, alice, job_id, 422, reviewers=["ana"])["detail"]
    assert "blind" in assign(client, alice, job_id, 422, reviewers=["ana", "ben"], count=1, blind=True)["detail"]
    assert "2 reviewers per sample" in assign(client, alice, job_id, 422, reviewers=["ana"], count=1, reviewers_per_sample=2)["detail"]
    assert assign(client, alice, job_id, 422, reviewers=["ana"], label="nope")["detail"]
    assert client.delete(f"/jobs/{job_id}/assignments", params={"of": "cy"}, headers=alice).json()["removed"] == len(of_class)


def test_blind_double_review_hides_verdicts_until_decided_and_waits_for_the_adjudicator(
    client, alice, team, finished_job
):
    job_id = finished_job.job_id
    result = assign(client, alice, job_id, reviewers=["ana", "ben"], rank_from=1, rank_to=3, reviewers_per_sample=2, blind=True)
    assert result == {"samples": 3, "assignments": 6, "per_reviewer": {"ana": 3, "ben": 3}}
    first = queue(client, team["ana"], job_id)["items"][0]
    index, label = first["sample_index"], first["label"]

    made = decide(client, team["ana"], job_id, index, "relabel", other(label))
    # Ben still has the sample to review, and sees no verdict of ana's on it, anywhere.
    ben_queue = queue(client, team["ben"], job_id)
    ben_first = next(item for item in ben_queue["items"] if item["sample_index"] == index)
    assert ben_first["review"] is None or ben_first["review"]["decisions"] == []
    assert ben_queue["progress"] == {"total": 3, "decided": 0, "remaining": 3, "conflicts": 0}
    ben_list = client.get(f"/jobs/{job_id}/decisions", headers=team["ben"]).json()["samples"]
    assert all(sample["sample_index"] != index for sample in ben_list)
    assert client.get(f"/decisions/{made['id']}/comments", headers=team["ben"]).status_code == 403
    for export in ("export.csv", "export.json", "export.labelstudio.json"):
        assert client.get(f"/jobs/{job_id}/{export}", headers=team["ben"]).status_code == 403, export
    # Ana, who decided, and the lead see her verdict.
    assert queue(client, team["ana"], job_id, status="decided")["items"][0]["review"]["decisions"][0]["id"] == made["id"]
    # One of the two blind verdicts is not yet an agreed one.
    lead_view = next(s for s in client.get(f"/jobs/{job_id}/decisions", headers=alice).json()["samples"] if s["sample_index"] == index)
    assert lead_view["outcome"] is None and lead_view["is_mislabeled"] is None

    kept = decide(client, team["ben"], job_id, index, "keep")
    ben_view = queue(client, team["ben"], job_id, status="conflict")["items"]
    assert [item["sample_index"] for item in ben_view] == [index]
    assert {d["reviewer"] for d in ben_view[0]["review"]["decisions"]} == {"ana", "ben"}
    # Blind reviewers who disagree make nothing known until adjudicated.
    lead_view = next(s for s in client.get(f"/jobs/{job_id}/decisions", headers=alice).json()["samples"] if s["sample_index"] == index)
    assert lead_view["conflict"] is True and lead_view["is_mislabeled"] is None and lead_view["outcome"] is None

    comment = client.post(f"/decisions/{kept['id']}/comments", json={"text": "looks like a 7 to me"}, headers=team["ben"])
    assert comment.status_code == 201, comment.text
    assert client.post(f"/decisions/{kept['id']}/comments", json={"text": "  "}, headers=team["ben"]).status_code == 422

    # Only the lead or an adjudicator sees and resolves conflicts.
    assert client.get(f"/jobs/{job_id}/conflicts", headers=team["cy"]).status_code == 403
    assert client.put(f"/jobs/{job_id}/adjudicators/cy", headers=team["ana"]).status_code == 403
    assert client.put(f"/jobs/{job_id}/adjudicators/cy", headers=alice).json()["adjudicators"] == ["cy"]
    conflicts = client.get(f"/jobs/{job_id}/conflicts", headers=team["cy"]).json()
    assert conflicts["open"] == 1
    (sample,) = conflicts["samples"]
    assert sample["sample_index"] == index and sample["blind"] is True and sample["rank"] == 1
    assert [c["text"] for d in sample["decisions"] for c in d["comments"]] == ["looks like a 7 to me"]

    final = other(other(label))
    not_conflicting = queue(client, alice, job_id, scope="all")["items"][-1]["sample_index"]
    body = {"sample_index": not_conflicting, "verdict": "keep"}
    assert client.post(f"/jobs/{job_id}/adjudications", json=body, headers=team["cy"]).status_code == 409
    body = {"sample_index": index, "verdict": "relabel", "label": final}
    assert client.post(f"/jobs/{job_id}/adjudications", json=body, headers=team["ana"]).status_code == 403
    response = client.post(f"/jobs/{job_id}/adjudications", json=body, headers=team["cy"])
    assert response.status_code == 201, response.text

    # The adjudicated verdict is the agreed one: the decisions list, the export, no open conflict.
    lead_view = next(s for s in client.get(f"/jobs/{job_id}/decisions", headers=alice).json()["samples"] if s["sample_index"] == index)
    assert lead_view["conflict"] is False and lead_view["outcome"] == final and lead_view["is_mislabeled"] is True
    rows = list(csv.DictReader(io.StringIO(client.get(f"/jobs/{job_id}/export.csv", headers=alice).text)))
    row = next(row for row in rows if row["sample_index"] == str(index))
    assert (row["label"], row["verdict"], row["conflict"]) == (final, "relabel", "False")
    # The reviewers column names who settled it, after the verdicts they settled.
    assert row["reviewers"] == f"ana: relabel to {other(label)}; ben: keep; cy (adjudicator): relabel to {final}"
    assert client.get(f"/jobs/{job_id}/conflicts", headers=alice).json()["open"] == 0
    assert client.get(f"/jobs/{job_id}/conflicts", params={"include_resolved": True}, headers=alice).json()["samples"][0]["outcome"] == final


def test_a_sample_assigned_openly_shows_the_other_verdicts(client, alice, team, finished_job):
    job_id = finished_job.job_id
    assign(client, alice, job_id, reviewers=["ana", "ben"], rank_from=1, rank_to=1, reviewers_per_sample=2)
    index = queue(client, team["ana"], job_id)["items"][0]["sample_index"]
    decide(client, team["ana"], job_id, index, "remove")
    (item,) = queue(client, team["ben"], job_id)["items"]  # still ben's to decide
    assert [d["reviewer"] for d in item["review"]["decisions"]] == ["ana"]


def test_team_progress_speed_and_kappa(client, alice, team, finished_job):
    job_id = finished_job.job_id
    assign(client, alice, job_id, reviewers=["ana", "ben", "cy"], rank_from=1, rank_to=10, reviewers_per_sample=3)
    items = queue(client, alice, job_id)["items"][:10]
    # Constructed verdicts: k keep, r relabel to the next class, x remove.
    pattern = {"ana": "kkkkrrrxxk", "ben": "kkkrrrrxkk", "cy": "kkkkrrxxxk"}
    for name in ("ana", "ben"):
        for item, code in zip(items, pattern[name]):
            verdict = {"k": "keep", "r": "relabel", "x": "remove"}[code]
            decide(client, team[name], job_id, item["sample_index"], verdict, other(item["label"]) if code == "r" else None)
    for item, code in zip(items[:6], pattern["cy"]):
        verdict = {"k": "keep", "r": "relabel", "x": "remove"}[code]
        decide(client, team["cy"], job_id, item["sample_index"], verdict, other(item["label"]) if code == "r" else None)

    report = client.get(f"/jobs/{job_id}/team", headers=team["ana"]).json()
    assert report["viewer"] == {"reviewer": "ana", "lead": False, "adjudicator": False}
    stats = {entry["reviewer"]: entry for entry in report["reviewers"]}
    assert (stats["ana"]["assigned"], stats["ana"]["decided"], stats["ana"]["remaining"]) == (10, 10, 0)
    assert (stats["cy"]["assigned"], stats["cy"]["decided"], stats["cy"]["remaining"]) == (10, 6, 4)
    assert stats["ana"]["median_seconds_between"] >= 0
    assert stats["ana"]["decisions_per_hour"] is None or stats["ana"]["decisions_per_hour"] > 0

    # A verdict is rated as the label it leaves the sample with (or removed).
    outcomes = {
        name: [
            {"k": item["label"], "r": other(item["label"]), "x": "(removed)"}[code]
            for item, code in zip(items, codes)
        ]
        for name, codes in pattern.items()
    }
    pairs = {(pair["first"], pair["second"]): pair for pair in report["pairs"]}
    ana_ben = pairs[("ana", "ben")]
    assert (ana_ben["shared"], ana_ben["agreeing"]) == (10, 8)
    assert ana_ben["cohen_kappa"] == pytest.approx(cohen_kappa_score(outcomes["ana"], outcomes["ben"]))
    assert pairs[("ana", "cy")]["shared"] == 6
    expected = cohen_kappa_score(outcomes["ana"][:6], outcomes["cy"][:6])
    assert pairs[("ana", "cy")]["cohen_kappa"] == pytest.approx(expected)
    assert report["fleiss_samples"] == 10
    assert report["fleiss_kappa"] == pytest.approx(_fleiss(outcomes, 6))
    assert report["assigned_samples"] == 10 and report["blind_samples"] == 0
    assert report["open_conflicts"] == 2  # the 4th (k, r, k) and the 9th (x, k) samples


def _fleiss(outcomes: dict[str, list[str]], cy_decided: int) -> float:
    """Fleiss' kappa by hand over 10 samples: ana's and ben's verdicts, plus cy's on the first 6
    (each sample's agreement over its own rater pairs)."""
    subjects = [
        [outcomes["ana"][i], outcomes["ben"][i]] + ([outcomes["cy"][i]] if i < cy_decided else []) for i in range(10)
    ]
    categories = sorted({code for subject in subjects for code in subject})
    per_subject = []
    for subject in subjects:
        n = len(subject)
        per_subject.append((sum(subject.count(c) ** 2 for c in categories) - n) / (n * (n - 1)))
    total = sum(len(subject) for subject in subjects)
    shares = [sum(subject.count(c) for subject in subjects) / total for c in categories]
    observed, chance = sum(per_subject) / len(subjects), sum(p * p for p in shares)
    return (observed - chance) / (1 - chance)


def test_the_queue_shows_the_comments_a_reviewer_may_see(client, alice, team, finished_job):
    job_id = finished_job.job_id
    assign(client, alice, job_id, reviewers=["ana", "ben"], rank_from=1, rank_to=1, reviewers_per_sample=2, blind=True)
    index = queue(client, team["ana"], job_id)["items"][0]["sample_index"]

    def said(headers, **params) -> list[tuple[str, str]]:
        item = next(item for item in queue(client, headers, job_id, **params)["items"] if item["sample_index"] == index)
        return [(comment["author"], comment["text"]) for comment in item["comments"]]

    made = decide(client, team["ana"], job_id, index, "keep")
    assert client.post(f"/decisions/{made['id']}/comments", json={"text": "a clear 3"}, headers=team["ana"]).status_code == 201
    assert said(team["ana"], status="decided") == [("ana", "a clear 3")]
    # Blind: ben sees neither ana's verdict nor her comment before deciding himself.
    assert said(team["ben"]) == []

    kept = decide(client, team["ben"], job_id, index, "keep")
    assert client.post(f"/decisions/{kept['id']}/comments", json={"text": "agreed"}, headers=team["ben"]).status_code == 201
    both = [("ana", "a clear 3"), ("ben", "agreed")]
    assert said(team["ben"], status="decided") == both
    assert said(alice, status="all", scope="all") == both
