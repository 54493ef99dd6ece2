# The two commands of the quick start: `make serve` and `make test`.
PYTHON ?= python3
PIP := $(PYTHON) -m pip
export PIP_ROOT_USER_ACTION := ignore
export PIP_DISABLE_PIP_VERSION_CHECK := 1

.PHONY: install install-test serve test bench

install:
	$(PIP) install -q -e .
	# face_recognition's own metadata asks for a source build of dlib; dlib-bin (a dependency) provides it
	$(PIP) install -q --no-deps "face_recognition==1.3.0"

install-test: install
	@# Chromium for the browser tests; a CJK font so Chinese text renders in its screenshots
	@if ! command -v chromium >/dev/null 2>&1 || ! fc-list 2>/dev/null | grep -qi wenquanyi; then \
		apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium chromium-driver \
			fonts-wqy-microhei; fi
	@# Firefox ESR for tests/browser/test_firefox.py, driven by puppeteer-core (no browser download) from Node.js
	@if ! command -v firefox-esr >/dev/null 2>&1 || ! command -v npm >/dev/null 2>&1; then \
		apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq firefox-esr \
			$$(command -v npm >/dev/null 2>&1 || echo nodejs npm); fi
	@# iproute2 for tests/browser/test_network_change.py (the customer's browser on a host of its own: ip netns, veth)
	@if ! command -v ip >/dev/null 2>&1; then \
		apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq iproute2; fi
	cd tests/browser/firefox && npm ci --no-audit --no-fund --loglevel=error
	$(PIP) install -q -e ".[test]"

serve: install
	vbranch serve --demo

test: install-test
	$(PYTHON) -m pytest -q

bench: install-test
	$(PYTHON) bench/routing.py
	$(PYTHON) bench/facecheck.py
	$(PYTHON) bench/media.py
	$(PYTHON) bench/replay.py
