"""model/ never imports service/ (nor FastAPI): the predictor is usable without the product around it."""
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def test_importing_model_loads_no_service_code() -> None:
    code = ("import sys, model, model.cli, model.train, model.evaluate; "
            "bad = [m for m in sys.modules if m.split('.')[0] in ('service', 'fastapi', 'uvicorn', 'starlette')]; "
            "print(bad); sys.exit(1 if bad else 0)")
    r = subprocess.run([sys.executable, "-c", code], check=False, capture_output=True, text=True, cwd=ROOT, timeout=120)
    assert r.returncode == 0, r.stdout + r.stderr


def test_model_sources_do_not_mention_service_imports() -> None:
    for path in (ROOT / "model").glob("*.py"):
        text = path.read_text()
        assert "import service" not in text and "from service" not in text, path
