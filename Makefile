# The README's commands. Each installs what it needs first, so any of them works as the first
# command on a fresh machine.
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed-stamp
# The CPU build, installed before anything that depends on torch, so pip does not pull a CUDA build.
TORCH_SPEC ?= torch==2.13.0
DEMO_OUT ?= demo-output
BENCH_OUT ?= benchmarks/results

# Debian packages the edge service and its tests run: the PACS (Orthanc + DICOMweb), DCMTK's
# storescu, dciodvfy, Chromium with its driver for the browser tests, and PostgreSQL for the results
# store's test on a server. Installed as root.
DEBIAN_PACKAGES := orthanc orthanc-dicomweb dcmtk dicom3tools chromium chromium-driver postgresql
# The OHIF viewer the edge service serves: the built dist/ the npm package @ohif/app ships (only
# that folder: the package's own dependencies are what it was built from).
OHIF_VERSION := 3.13.2
VIEWER_DIR := infra/ohif/dist
VIEWER := $(VIEWER_DIR)/index.html

.PHONY: install system viewer test demo bench clean

install: $(STAMP) system viewer

system:
	@missing=$$(for p in $(DEBIAN_PACKAGES); do dpkg-query -W -f='$${Status}' $$p 2>/dev/null | grep -q "install ok installed" || echo $$p; done); \
	if [ -n "$$missing" ]; then \
		echo "installing Debian packages:" $$missing; \
		SUDO=$$([ "$$(id -u)" = 0 ] || echo sudo); \
		$$SUDO env DEBIAN_FRONTEND=noninteractive apt-get update -q && \
		$$SUDO env DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends $$missing; \
	fi

viewer: $(VIEWER)

$(VIEWER):
	mkdir -p infra/ohif/.download
	cd infra/ohif/.download && npm pack --silent @ohif/app@$(OHIF_VERSION) >/dev/null && tar xzf ohif-app-$(OHIF_VERSION).tgz package/dist
	rm -rf $(VIEWER_DIR) && mv infra/ohif/.download/package/dist $(VIEWER_DIR) && rm -rf infra/ohif/.download
	touch $(VIEWER)

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet "$(TORCH_SPEC)"
	$(PY) -m pip install --quiet -e ".[dev]"
	touch $(STAMP)

# Two workers (pytest-xdist): much of the suite waits on the servers it starts (Triton, Orthanc,
# MLflow, Chromium), so two keep both cores busy. The tests of each fixture that takes
# minutes to build share one worker (tests/conftest.py), so it is built once.
test: install
	$(PY) -m pytest -n 2 --dist loadgroup

demo: install
	$(VENV)/bin/ctscreen demo --out $(DEMO_OUT)

bench: install
	$(PY) benchmarks/run_all.py --out $(BENCH_OUT)

clean:
	rm -rf $(VENV) $(DEMO_OUT) .pytest_cache $(VIEWER_DIR)
