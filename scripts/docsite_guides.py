"""Sphinx extension for `make docs`: the Markdown guides of docs/ as pages of the docsite.

docs/docsite/extra-docs.yml lists the guides; each has a short page docs/docsite/rst/<name>.rst
(its label, its title, where the guide is), which antsibull-docs copies into the docsite's
source tree. Before Sphinx reads that tree, this extension puts the guide itself,
docs/<name>.md, in place of each such page (parsed by MyST, with the page's label kept), so
the text of a guide lives in one file only.

Links in a guide are rewritten for the docsite: a link to another guide of the docsite stays
a document link (`other.md`); any other relative link (a playbook, a test, a page outside
the docsite) becomes a link to the file in the repository (galaxy.yml's `repository`, branch
`main`), as the reader of a rendered page has no checkout at hand.

Use: put this directory on sys.path in the docsite's conf.py and add `docsite_guides` to
`extensions` (it loads `myst_parser` itself).
"""

import os
import posixpath
import re

import yaml

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
DOCS = os.path.join(ROOT, "docs")
LABEL_PREFIX = "ansible_collections.bosun.platform.docsite."
BRANCH = "main"

# [text](target) and [text](target "title"); images too. Not inside code (see _rewrite).
LINK = re.compile(r"(!?\[[^\]]*\]\()([^)\s]+)((?:\s+\"[^\"]*\")?\))")
FENCE = re.compile(r"^\s*(```|~~~)")
CODE_SPAN = re.compile(r"(`+).+?\1")


def guide_names(docs=DOCS):
    """The guides extra-docs.yml lists, in its order."""
    with open(os.path.join(docs, "docsite", "extra-docs.yml"), encoding="utf-8") as f:
        index = yaml.safe_load(f) or {}
    names = []
    for section in index.get("sections") or []:
        for entry in section.get("toctree") or []:
            names.append(entry["ref"] if isinstance(entry, dict) else entry)
    return names


def repository_url(root=ROOT):
    with open(os.path.join(root, "galaxy.yml"), encoding="utf-8") as f:
        return (yaml.safe_load(f) or {})["repository"].rstrip("/")


def rewrite_target(target, guides, repo):
    """The link target a rendered guide needs in place of `target` (relative to docs/)."""
    if re.match(r"^[a-z][a-z0-9+.-]*:", target) or target.startswith(("#", "/")):
        return target  # a URL, mailto:, an anchor in the same page, an absolute path
    path, _sep, anchor = target.partition("#")
    name = path[:-3] if path.endswith(".md") else None
    if name in guides and "/" not in path:
        return target
    resolved = posixpath.normpath(posixpath.join("docs", path))
    if resolved.startswith(".."):
        return target
    kind = "tree" if path.endswith("/") or os.path.isdir(os.path.join(ROOT, resolved)) else "blob"
    return "%s/%s/%s/%s%s" % (repo, kind, BRANCH, resolved, "#" + anchor if anchor else "")


def _rewrite(text, guides, repo):
    def fix(match):
        return match.group(1) + rewrite_target(match.group(2), guides, repo) + match.group(3)

    out = []
    in_block = False
    for line in text.splitlines(keepends=True):
        if FENCE.match(line):
            in_block = not in_block
            out.append(line)
            continue
        if in_block:
            out.append(line)
            continue
        # A link whose `[` sits inside a code span is code, not a link; code inside a
        # link's text is fine.
        spans = [m.span() for m in CODE_SPAN.finditer(line)]
        pieces = []
        last = 0
        for match in LINK.finditer(line):
            if any(start < match.start() < end for start, end in spans):
                continue
            pieces.append(line[last : match.start()])
            pieces.append(fix(match))
            last = match.end()
        pieces.append(line[last:])
        out.append("".join(pieces))
    return "".join(out)


def guide_page(name, guides, repo, docs=DOCS):
    """The MyST page for guide `name`: the stub's label, then the guide, links rewritten."""
    with open(os.path.join(docs, name + ".md"), encoding="utf-8") as f:
        text = f.read()
    return "(%s%s)=\n\n%s" % (LABEL_PREFIX, name, _rewrite(text, guides, repo))


def replace_stubs(srcdir, docs=DOCS):
    """Put each guide in place of its stub page under srcdir; return the names replaced."""
    guides = guide_names(docs)
    repo = repository_url()
    done = []
    for dirpath, _dirs, files in os.walk(srcdir):
        for name in guides:
            stub = os.path.join(dirpath, name + ".rst")
            if name + ".rst" not in files:
                continue
            with open(stub, encoding="utf-8") as f:
                if ".. _%s%s:" % (LABEL_PREFIX, name) not in f.read():
                    continue
            with open(os.path.join(dirpath, name + ".md"), "w", encoding="utf-8") as f:
                f.write(guide_page(name, guides, repo, docs))
            os.remove(stub)
            done.append(name)
    return done


def _builder_inited(app):
    missing = set(guide_names()) - set(replace_stubs(app.srcdir))
    if missing:
        raise RuntimeError("docsite_guides: no stub page for %s under %s" % (", ".join(sorted(missing)), app.srcdir))


def _config_inited(_app, config):
    # Anchors for the headings, so that `other.md#a-section` links resolve as on GitHub.
    config.myst_heading_anchors = 4
    # Guides show sample output in code blocks (`...` in JSON, a play's output under a
    # YAML fence): highlighted as plain text instead of failing the build.
    config.suppress_warnings = list(config.suppress_warnings or []) + ["misc.highlighting_failure"]


def setup(app):
    app.setup_extension("myst_parser")
    app.connect("config-inited", _config_inited)
    app.connect("builder-inited", _builder_inited)
    return {"parallel_read_safe": True, "parallel_write_safe": True}
