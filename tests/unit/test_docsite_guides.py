"""scripts/docsite_guides.py: the Markdown guides become docsite pages, links fixed for the site."""

import importlib.util
import os

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def _load():
    spec = importlib.util.spec_from_file_location("docsite_guides", os.path.join(ROOT, "scripts", "docsite_guides.py"))
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


dg = _load()
REPO = "https://example.org/bosun"
GUIDES = ["production", "backup-restore"]


def test_every_guide_has_a_stub_and_a_markdown_file():
    names = dg.guide_names()
    assert "production" in names and "security" in names
    for name in names:
        assert os.path.isfile(os.path.join(ROOT, "docs", name + ".md")), name
        with open(os.path.join(ROOT, "docs", "docsite", "rst", name + ".rst"), encoding="utf-8") as f:
            assert f.readline() == ".. _ansible_collections.bosun.platform.docsite.%s:\n" % name


def test_links_between_guides_stay_and_others_point_at_the_repository():
    text = (
        "See [PITR](backup-restore.md#point-in-time-recovery-pitr), [the play](../playbooks/site.yml),\n"
        "[`bosun.prf`](../molecule/shared/lynis/bosun.prf), [web](https://example.com/x.md), [here](#top)\n"
        "and `[not](a-link.md)` in code.\n"
        "```\n[also not](code.md)\n```\n"
    )
    out = dg._rewrite(text, GUIDES, REPO)
    assert "[PITR](backup-restore.md#point-in-time-recovery-pitr)" in out
    assert "[the play](%s/blob/main/playbooks/site.yml)" % REPO in out
    assert "[`bosun.prf`](%s/blob/main/molecule/shared/lynis/bosun.prf)" % REPO in out
    assert "[web](https://example.com/x.md)" in out and "[here](#top)" in out
    assert "`[not](a-link.md)`" in out and "[also not](code.md)" in out


def test_stub_replaced_by_the_guide_with_its_label(tmp_path):
    site = tmp_path / "rst" / "docsite"
    site.mkdir(parents=True)
    for name in dg.guide_names():
        (site / (name + ".rst")).write_text(".. _ansible_collections.bosun.platform.docsite.%s:\n\nStub\n====\n" % name)
    done = dg.replace_stubs(str(tmp_path / "rst"))
    assert sorted(done) == sorted(dg.guide_names())
    page = (site / "production.md").read_text()
    assert page.startswith("(ansible_collections.bosun.platform.docsite.production)=\n\n# ")
    assert not (site / "production.rst").exists()
