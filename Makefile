# `make test` and `make demo` work on a machine with nothing but Python 3.10+ on it: they create a
# virtualenv in $(VENV) and install the project into it, then reuse it until setup.cfg changes.
PYTHON ?= python3
VENV ?= .venv
# oneDNN's CPU kernels for every program and test on x86 CPUs (the trainers set it too);
# TF_ENABLE_ONEDNN_OPTS=0 in the environment opts out.
ifeq ($(shell uname -m),x86_64)
export TF_ENABLE_ONEDNN_OPTS ?= 1
endif
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
# The optional fused resize+flip kernel of the input pipelines (pipelines/fused.py), built for the
# installed TensorFlow; without a C++ compiler the pipelines use TF's ops and this says so.
FUSED := $(VENV)/.fused-kernel
PYTEST_ARGS ?=
DEMO_DIR ?= runs/demo
# ResNet-18 on the built-in shapes set: 3-9 min on 2 CPU cores by the CPU (README's table); data, order
# and initialization are seeded. --bn_momentum=0.9: with Keras's 0.99 its BatchNormalization statistics
# lagged the weights after 5 epochs (0.908 test accuracy on an AMX Xeon in bfloat16; 1.000 with it).
DEMO_FLAGS ?= --model=resnet18 --dataset=shapes --image_size=64 --epochs=5 --batch_size=64 \
	--optimizer=adam --learning_rate=0.002 --lr_schedule=cosine --augment=flip --bn_momentum=0.9 \
	'--validation_split=validation[:256]'

.PHONY: install test test-quick lint demo notebook clean

install: $(STAMP) $(FUSED)

$(STAMP): setup.cfg pyproject.toml
	@test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e ".[test,figures]"
	@touch $(STAMP)

$(FUSED): $(STAMP) pipelines/csrc/resize_flip.cc
	$(BIN)/python -m pipelines.fused build --optional
	@touch $(FUSED)

# Two pytest-xdist workers, work-stealing: the whole suite takes 20-23 min this way on a 2-core AVX2
# EPYC (float32); 7.8-14.8 min on a 2-core Intel Xeon with AVX-512 BF16 and AMX (mixed bfloat16). Two
# workers keep two cores busy: a third made it slower (BUILD.md, tests).
PYTEST_WORKERS ?= 2
test: install
	$(BIN)/python -m pytest -n $(PYTEST_WORKERS) --dist worksteal $(PYTEST_ARGS)

# The unit tests alone, for the edit-test loop: every test not marked slow (no training run, no
# program started as a process): 121-147 s on the AVX2 EPYC, 64 s on the AVX-512 BF16 Xeon.
test-quick: install
	$(BIN)/python -m pytest -n $(PYTEST_WORKERS) --dist worksteal -m "not slow" $(PYTEST_ARGS)

# ruff, as configured in pyproject.toml: lint rules, then the formatter's check (no changes made).
lint: install
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

# docs/chapter14.ipynb run again top to bottom, its outputs kept in the file (about a minute on 2 cores).
notebook: install
	$(BIN)/jupyter execute --inplace docs/chapter14.ipynb

demo: install
	$(BIN)/python -m trainers.train --model_dir=$(DEMO_DIR) $(DEMO_FLAGS)
	$(BIN)/python -m trainers.evaluate --model_path=$(DEMO_DIR) --dataset=shapes --split=test
	$(BIN)/python -m pipelines.shapes $(DEMO_DIR)/samples 4
	$(BIN)/python -m trainers.predict --model_path=$(DEMO_DIR) $(DEMO_DIR)/samples/*.png
	$(BIN)/python -m trainers.export --model_path=$(DEMO_DIR) --format=tflite --quantize=int8
	@echo
	@echo "Model:       $(DEMO_DIR)/model.keras   (SavedModel: $(DEMO_DIR)/export)"
	@echo "For phones:  $(DEMO_DIR)/deploy/model-int8.tflite (raw pixels in, checked above)"
	@echo "TensorBoard: $(BIN)/tensorboard --logdir $(DEMO_DIR)/logs"

clean:
	rm -rf $(VENV) *.egg-info $(DEMO_DIR) pipelines/csrc/*.so
