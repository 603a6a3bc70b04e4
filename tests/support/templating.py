"""Render templates exactly as a play would, with this collection's filters.

Done in a child process: there the collection loader is in place before anything imports
``ansible_collections``, which a test process has usually imported the ordinary way already.
"""

import json
import subprocess
import sys

from tests.support.collection import ROOT, collections_path

RENDER = """
import json, sys
from ansible.parsing.dataloader import DataLoader
from ansible.plugins.loader import init_plugin_loader
from ansible.template import Templar, trust_as_template
init_plugin_loader([sys.argv[1]])
out = []
for template, variables in json.load(sys.stdin):
    if isinstance(template, dict):
        template = {key: trust_as_template(value) for key, value in template.items()}
    else:
        template = trust_as_template(template)
    out.append(Templar(loader=DataLoader(), variables=variables).template(template))
json.dump(out, sys.stdout)
"""


def render_all(pairs):
    """Each (template, variables) rendered; a template is a string or a dict of strings."""
    proc = subprocess.run(
        [sys.executable, "-c", RENDER, collections_path()],
        input=json.dumps(pairs),
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
        cwd=ROOT,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    return json.loads(proc.stdout)
