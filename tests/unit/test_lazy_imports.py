"""What our processes import at start: kubernetes-asyncio lazily (the same names resolve to the same objects, no
generated model is loaded: 38 MB less), and a cloud SDK only at its provider's first mint."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

from common.kubeimports import exports

# Every public name of the four lazy packages, as "module.qualname" (or the module's name), in a fresh interpreter.
NAMES = """
import json, sys, types
lazy = sys.argv[1] == "lazy"
if lazy:
    from common import kubeimports
    assert kubeimports.install()
import importlib
out = {}
for package in ("kubernetes_asyncio", "kubernetes_asyncio.client", "kubernetes_asyncio.client.api",
                "kubernetes_asyncio.client.models"):
    module = importlib.import_module(package)
    for name in module.__all__ if hasattr(module, "__all__") else ("client", "config", "watch"):
        value = getattr(module, name)
        out[f"{package}.{name}"] = value.__name__ if isinstance(value, types.ModuleType) else (
            f"{value.__module__}.{value.__qualname__}")
print(json.dumps(out))
"""

LOADED = """
import sys
import {module}
models = [m for m in sys.modules if m.startswith("kubernetes_asyncio.client.models.")]
sdks = [m for m in ("azure.identity", "azure.core", "google.auth", "google.oauth2", "requests") if m in sys.modules]
apis = sorted(m for m in sys.modules if m.startswith("kubernetes_asyncio.client.api."))
rss_kb = int(open("/proc/self/status").read().split("VmRSS:")[1].split()[0])
print(len(models), rss_kb // 1024, ",".join(sdks) or "-", ",".join(apis) or "-")
"""


def run(code: str, *args: str) -> str:
    return subprocess.run([sys.executable, "-c", code, *args], check=True, capture_output=True, text=True).stdout


def test_every_public_name_resolves_to_what_the_eager_import_gives() -> None:
    eager, lazy = json.loads(run(NAMES, "eager")), json.loads(run(NAMES, "lazy"))
    assert len(eager) > 800  # the client's APIs and models
    assert lazy == eager


@pytest.mark.parametrize("module", ["refresher.app", "webhook.server", "certs.__main__"])
def test_our_processes_import_no_generated_model(module: str) -> None:
    models, rss_mb, sdks, apis = run(LOADED.format(module=module)).split()
    print(f"\n{module}: {rss_mb} MB after imports; SDKs {sdks}; APIs loaded: {apis}")
    assert int(models) == 0
    assert sdks == "-"


def test_a_package_init_that_does_more_than_import_is_refused() -> None:
    imported, literals = exports('"""doc"""\nfrom a.b import C as D\nimport x.y as y\n__all__ = ["D"]\n')
    assert imported == {"D": ("a.b", "C"), "y": ("x.y", None)}
    assert literals == {"__all__": ["D"]}
    refused = {
        "from a import *\n": "import \\*",
        "import a\n": "without a name",
        "setup()\n": "line 1: Expr",
        "if x:\n    from a import b\n": "line 1: If",
    }
    for body, why in refused.items():
        with pytest.raises(ValueError, match=why):
            exports(body)


def test_a_process_that_imported_kubernetes_asyncio_first_keeps_it() -> None:
    code = "import kubernetes_asyncio\nfrom common import kubeimports\nprint(kubeimports.install())"
    assert run(code).strip() == "False"
