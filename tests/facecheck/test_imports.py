"""Importing: the package is light, face_recognition loads quietly and only on demand."""

from __future__ import annotations

import subprocess
import sys

HEAVY = ("dlib", "face_recognition", "face_recognition_models", "cv2", "av")


def run(code: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)


def test_package_import_does_not_load_the_engine():
    proc = run(
        "import sys, vbranch.facecheck\n"
        f"print(sorted(m for m in {HEAVY!r} if m in sys.modules))"
    )
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip() == "[]"


def test_models_load_without_the_install_message():
    proc = run(
        "import sys\n"
        "from vbranch.facecheck import engine\n"
        "assert 'face_recognition' not in sys.modules\n"
        "m = engine.load_models()\n"
        "assert engine.load_models() is m\n"
        "assert 'face_recognition' in sys.modules\n"
        "print('ok')"
    )
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip() == "ok"
    assert "Please install" not in proc.stdout + proc.stderr
    assert "pkg_resources" not in proc.stderr


def test_a_missing_models_package_is_a_clear_error_not_a_silent_exit():
    # face_recognition itself would print "Please install ..." and quit(); the engine raises instead
    proc = run(
        "import sys\n"
        "sys.modules['face_recognition_models'] = None  # make the import fail\n"
        "from vbranch.facecheck import engine, FaceEngineUnavailable\n"
        "try:\n"
        "    engine.load_models()\n"
        "except FaceEngineUnavailable as exc:\n"
        "    print('unavailable:', exc)\n"
    )
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.startswith("unavailable:")
    assert "Please install" not in proc.stdout + proc.stderr
