"""module_utils._backup.retention: only verified copies count; the newest verified one stays."""

import datetime
import os

from ansible_collections.bosun.platform.plugins.module_utils._backup import layout, retention

from tests.unit.test_backup_layout import make_backup

UTC = datetime.timezone.utc
NOW = datetime.datetime(2025, 3, 1, 12, 0, 0, tzinfo=UTC)


def stem(days_ago):
    return layout.stem_for(NOW - datetime.timedelta(days=days_ago, hours=1))


def corrupt(path):
    with open(path, "r+b") as f:
        f.write(b"X")


def plan(directory, counter=None, **kw):
    def check(entry):
        if counter is not None:
            counter.append(entry.stem)
        return entry.check()

    kw.setdefault("keep_min_verified", 1)
    return retention.plan_retention(layout.list_backups(directory), now=NOW, check=check, **kw)


def names(entries):
    return [e.stem for e in entries]


def test_no_rule_deletes_nothing(tmp_path):
    d = str(tmp_path)
    for age in range(5):
        make_backup(d, stem(age))
    p = plan(d)
    assert p.delete == [] and len(p.keep) == 5


def test_keep_last_keeps_newest_verified_and_reads_only_what_it_needs(tmp_path):
    d = str(tmp_path)
    for age in range(6):
        make_backup(d, stem(age))
    checked = []
    p = plan(d, checked, keep_last=2)
    assert names(p.keep) == [stem(0), stem(1)]
    assert names(p.delete) == [stem(2), stem(3), stem(4), stem(5)]
    assert checked == [stem(0), stem(1)]  # older ones are deleted without being read


def test_corrupt_backup_never_counts(tmp_path):
    d = str(tmp_path)
    for age in range(4):
        make_backup(d, stem(age))
    corrupt(os.path.join(d, stem(0) + ".dump.zst"))
    p = plan(d, keep_last=2)
    # The flipped newest backup is reported, kept (it is newer than the copies) but not counted.
    assert [c[0].stem for c in p.corrupt] == [stem(0)]
    assert "sha256" in p.corrupt[0][1]
    assert names(p.verified) == [stem(1), stem(2)]
    assert names(p.keep) == [stem(0), stem(1), stem(2)]
    assert names(p.delete) == [stem(3)]


def test_corrupt_backup_older_than_the_kept_copies_is_deleted(tmp_path):
    d = str(tmp_path)
    for age in range(4):
        make_backup(d, stem(age))
    corrupt(os.path.join(d, stem(1) + ".dump.zst"))
    p = plan(d, keep_last=1)
    assert names(p.keep) == [stem(0)]
    assert names(p.delete) == [stem(1), stem(2), stem(3)]


def test_keep_days_with_min_verified(tmp_path):
    d = str(tmp_path)
    for age in (0, 1, 5, 10, 40, 50):
        make_backup(d, stem(age))
    p = plan(d, keep_days=7)
    assert names(p.keep) == [stem(0), stem(1), stem(5)]
    assert names(p.delete) == [stem(10), stem(40), stem(50)]
    p = plan(d, keep_days=7, keep_min_verified=5)
    assert names(p.keep) == [stem(0), stem(1), stem(5), stem(10), stem(40)]


def test_keep_last_or_keep_days_whichever_keeps_more(tmp_path):
    d = str(tmp_path)
    for age in (0, 1, 2, 3, 20):
        make_backup(d, stem(age))
    assert names(plan(d, keep_last=4, keep_days=1).keep) == [stem(0), stem(1), stem(2), stem(3)]
    assert names(plan(d, keep_last=1, keep_days=3).keep) == [stem(0), stem(1), stem(2)]


def test_single_verified_backup_survives_every_policy(tmp_path):
    d = str(tmp_path)
    make_backup(d, stem(100))
    for kw in (dict(keep_days=0), dict(keep_last=1), dict(keep_days=1, keep_last=1)):
        p = plan(d, **kw)
        assert names(p.keep) == [stem(100)] and p.delete == []


def test_newest_verified_kept_even_behind_newer_corrupt_ones(tmp_path):
    d = str(tmp_path)
    make_backup(d, stem(30))
    for age in (0, 1):
        corrupt(make_backup(d, stem(age)))
    make_backup(d, stem(2), verified=False)
    make_backup(d, stem(3), manifest=False)
    make_backup(d, stem(60))
    p = plan(d, keep_days=0)
    assert names(p.verified) == [stem(30)]
    assert names(p.keep) == [stem(0), stem(1), stem(2), stem(3), stem(30)]
    assert names(p.delete) == [stem(60)]
    assert sorted(c[0].stem for c in p.corrupt) == sorted([stem(0), stem(1), stem(2), stem(3)])


def test_nothing_deleted_without_any_verified_copy(tmp_path):
    d = str(tmp_path)
    for age in range(3):
        corrupt(make_backup(d, stem(age)))
    p = plan(d, keep_last=1)
    assert p.delete == [] and len(p.keep) == 3 and len(p.corrupt) == 3


def test_delete_entry_removes_backup_then_manifest(tmp_path):
    d = str(tmp_path)
    make_backup(d, stem(1))
    (entry,) = layout.list_backups(d)
    retention.delete_entry(entry)
    assert os.listdir(d) == []


def test_result_shape(tmp_path):
    d = str(tmp_path)
    make_backup(d, stem(0))
    make_backup(d, stem(1))
    out = plan(d, keep_last=1).as_result()
    assert out["kept"] == [os.path.join(d, stem(0) + ".dump.zst")]
    assert out["deleted"] == [os.path.join(d, stem(1) + ".dump.zst")]
    assert out["verified_copies"] == 1 and out["corrupt"] == []
