# Convenience targets; CI runs `bash .ci/run` (= scripts/test.sh). The tiers: README, "Tests and
# their tiers". `test`, `lanes` and `matrix` are the CI tier; the rest are run by hand.
.PHONY: matrix-full test types lanes matrix lab day2 services bench-services lab-airflow lab-services upgrade-lab e2e-manual bench-airflow bench-http bench-2016 soak soak-mariadb soak-postgresql soak-zookeeper container-tools container-image container-lab

PYTHON ?= .venv/bin/python
SOAK_SECONDS ?= 3600
SOAK_SEED ?= 1
SOAK_NODE_CONTROL ?= self
SOAK_SERVICES ?= 1

# Everything CI runs: installs what the tests need, then ruff, mypy and the CI tier in nine lanes.
test:
	bash scripts/test.sh

# Types as the oldest and the newest supported Python see them (the first needs .venv-py3.9: mypy
# for 3.9 cannot parse the packages pip installs on 3.11).
types:
	.venv/bin/mypy scheduler_failover_controller tests benchmarks
	.venv-py3.9/bin/mypy --python-version 3.9 scheduler_failover_controller tests benchmarks
	.venv-py3.13/bin/mypy --python-version 3.13 scheduler_failover_controller tests benchmarks

# The CI tier's lanes alone (no set-up, ruff or mypy), longest first: lab, py3.13-process,
# py3.9-process, process, main, py3.13, py3.9, process-servers, e2e.
lanes:
	bash scripts/lanes.sh

# CI's py3.9 and py3.13 lanes alone (the process tier there on SQLite).
matrix:
	SFC_LANES="py3.13-process py3.9-process py3.13 py3.9" bash scripts/lanes.sh

# The whole real-process tier (every metastore) on the oldest and the newest supported Python.
matrix-full:
	.venv-py3.9/bin/python -m pytest -q -p no:cacheprovider tests/process -m "not manual"
	.venv-py3.13/bin/python -m pytest -q -p no:cacheprovider tests/process -m "not manual"

# The whole multi-host lab (as root): simulated master hosts in network/PID/UTS/mount namespaces,
# sshd, MariaDB, PostgreSQL and ZooKeeper on 198.18.0.2, one controller per host, every failure
# scenario on every metastore it names, with node_control = ssh and = self (no sshd on the hosts)
# (CI runs the MariaDB runs, in self mode one per fault class), and a 3-minute chaos soak
# (SFC_SOAK_SECONDS, SFC_SOAK_SEED, SFC_SOAK_METASTORE, SFC_SOAK_SERVICES). Real daemons as services: `make lab-services`.
lab:
	$(PYTHON) -m pytest -p no:cacheprovider tests/lab -v --ignore=tests/lab/test_upgrade.py --ignore=tests/lab/test_lab_services.py

# Day-2 operations with real controllers that wait out a timeout (failure_timeout): the manual part
# of tests/process/test_failback.py, and the drain/failback benchmark.
day2:
	$(PYTHON) -m pytest -p no:cacheprovider tests/process/test_failback.py -m manual -v
	$(PYTHON) benchmarks/drain.py --trials 5

# Several services with real controllers (tests/process/test_services.py) on SQLite and ZooKeeper;
# CI runs the SQLite one. Then the operations per service on a real fleet (test_ops_fleet.py).
# About two minutes.
services:
	$(PYTHON) -m pytest -p no:cacheprovider tests/process/test_services.py -v
	$(PYTHON) -m pytest -p no:cacheprovider tests/process/test_ops_fleet.py -m manual -v

# Cycle time with 1, 3 and 10 services under one daemon, on an SQLite file and on ZooKeeper.
bench-services:
	$(PYTHON) benchmarks/services.py --metastore sqlite
	$(PYTHON) benchmarks/services.py --metastore zookeeper

# Real Airflow schedulers in the lab (as root): Airflow 3 and 2, on PostgreSQL and MariaDB, every
# fault (scheduler SIGKILL, host crash, partition, switchover, controller restart) and start style
# (default, setsid, -D). CI runs the fast scenario alone (Airflow 3, PostgreSQL, SIGKILL).
lab-airflow:
	SFC_LAB_AIRFLOW=all $(PYTHON) -m pytest -p no:cacheprovider tests/lab/test_airflow_lab.py -v

# Real daemons as services beside the scheduler in the lab (as root): a real celery beat (from
# .venv-celery) on the stand-in lab and a real Airflow 3 triggerer beside a real scheduler, each hit
# by a SIGKILL, a host crash and a partition. CI runs the beat SIGKILL alone (about 20 s). About 15
# minutes in all, most of it Airflow's.
lab-services:
	$(PYTHON) -m pytest -p no:cacheprovider tests/lab/test_lab_services.py -v

# Rolling upgrades in the lab (as root): three hosts start on an earlier release (ac729e4 in ssh
# mode, bba5d34 in self mode; each built once into a virtualenv under UPGRADE_CACHE), each master is
# switched to this checkout and back while the scheduler runs; every CLI command of both releases
# is run against the mixed cluster. 6 to 9 minutes (the first run 2 more, building the releases).
UPGRADE_CACHE ?= /var/cache/sfc-upgrade-lab

upgrade-lab:
	SFC_UPGRADE_CACHE=$(UPGRADE_CACHE) $(PYTHON) -m pytest -p no:cacheprovider -s tests/lab/test_upgrade.py -v

# The end-to-end tests CI leaves out (manual): airflow_job_fencing on MariaDB with a migrated Airflow database.
e2e-manual:
	$(PYTHON) -m pytest -p no:cacheprovider tests/e2e -m manual -v

# Fault to the next task run with real schedulers (as root): kill, crash, partition; Airflow 3 and 2.
bench-airflow:
	$(PYTHON) benchmarks/airflow.py --trials 5

# HTTP API latency alone and under 1,000 idle connections held by nobody (as root), and a killed
# scheduler's restart under that flood.
bench-http:
	$(PYTHON) benchmarks/http_latency.py

# The 2016 controller (v1.0.9, a checkout of it at LEGACY_CHECKOUT, run by .venv-airflow2) beside this
# one in the lab (as root): every fault, at the same settings and at each one's defaults; every trial
# is appended to BENCH_2016_OUT as it ends (`benchmarks/legacy.py --summarize FILE` prints the table).
LEGACY_CHECKOUT ?=
LEGACY_TRIALS ?= 3
BENCH_2016_OUT ?= bench-2016.jsonl

bench-2016:
	$(PYTHON) benchmarks/legacy.py $(if $(LEGACY_CHECKOUT),--legacy-checkout "$(LEGACY_CHECKOUT)") --trials $(LEGACY_TRIALS) --out $(BENCH_2016_OUT)

# The chaos soak by hand (as root): SOAK_SECONDS (default an hour) on each metastore in turn,
# seed SOAK_SEED, node_control SOAK_NODE_CONTROL (self or ssh), SOAK_SERVICES (1: a second service
# beside the scheduler, 0: the scheduler alone); each run prints its figures per service and fails on
# two of a service at once or a fault not recovered.
soak: soak-mariadb soak-postgresql soak-zookeeper

soak-mariadb soak-postgresql soak-zookeeper:
	$(PYTHON) benchmarks/soak.py --metastore $(@:soak-%=%) --seconds $(SOAK_SECONDS) --seed $(SOAK_SEED) --node-control $(SOAK_NODE_CONTROL) --services $(SOAK_SERVICES)

# Containers for real (as root; README, "Containers"): a dockerd of the lab's own, the image built
# without a registry (debootstrap + docker import, Python packages from a wheelhouse of
# .venv-airflow's), the compose example's three masters and PostgreSQL, and every container fault.
# Built artefacts stay in CONTAINER_CACHE: the first run costs about 10 minutes more.
CONTAINER_CACHE ?= /var/cache/sfc-container-lab

container-tools:
	@command -v debootstrap >/dev/null && [ -x /usr/sbin/dockerd ] && [ -x /usr/bin/docker-compose ] || \
	  { apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends docker.io docker-compose debootstrap >/dev/null; }

container-image: container-tools
	$(PYTHON) -m tests.containers.build $(CONTAINER_CACHE)

container-lab: container-tools
	SFC_CONTAINER_CACHE=$(CONTAINER_CACHE) $(PYTHON) -m pytest -p no:cacheprovider -s tests/containers -v
