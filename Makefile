# rl_mlops: the model lifecycle of an RL trading agent inside PostgreSQL.
#
#   make            build rl_mlops.so (serving, no libtorch) and
#                   rl_mlops_trainer.so (training worker, links libtorch)
#   make install    install both libraries, the control file and SQL scripts
#   make deps       apt-get whatever the build and the tests need (root)
#   make test       deps, build, install, then every test suite
#   make demo       the whole lifecycle on a throwaway local cluster

EXTENSION = rl_mlops
EXTVERSION = 0.2.0

# Debian's versioned pg_config; /usr/bin/pg_config may point at another major.
PG_CONFIG ?= $(firstword $(wildcard /usr/lib/postgresql/15/bin/pg_config) pg_config)

# The source tree shows the two libraries (see ARCHITECTURE.md):
#   src/core/       plain C over weights and prices, no PostgreSQL headers
#                   (the forward pass, the trading environment, rollouts,
#                   backtests); in both libraries and in test/c
#   src/common/     PostgreSQL glue in both libraries: checkpoints, large
#                   objects, running as the owner, settings, the source
#                   relation, the worker protocol
#   src/extension/  rl_mlops.so, the SQL API every backend loads (registry,
#                   serving, starting trainer workers); never links libtorch
#   src/trainer/    rl_mlops_trainer.so, loaded only by trainer workers
#   src/torch/      the libtorch shim behind the plain-C src/torch/rl_torch.h,
#                   linked only into rl_mlops_trainer.so
objects = $(patsubst %.c,%.o,$(sort $(wildcard src/$(1)/*.c)))
CORE_OBJS = $(call objects,core)
COMMON_OBJS = $(CORE_OBJS) $(call objects,common)

MODULE_big = rl_mlops
OBJS = $(call objects,extension) $(COMMON_OBJS)

# The training worker's library: C entry points plus the libtorch shim.
TRAINER = rl_mlops_trainer
TRAINER_OBJS = $(call objects,trainer) src/torch/rl_torch.o $(COMMON_OBJS)

# The install script is built from one file per concept in sql/install/.
# Every statement there can run again over an older version, so an upgrade
# script is the whole install script between the two halves of its
# migration (sql/upgrade/FROM--TO/before.sql and after.sql): fresh and
# upgraded databases get the same definitions.  Released install scripts
# are kept frozen in sql/ (DATA).
INSTALL_PARTS = $(sort $(wildcard $(srcdir)/sql/install/*.sql))
UPGRADES = $(patsubst $(srcdir)/sql/upgrade/%,sql/rl_mlops--%.sql,\
	$(wildcard $(srcdir)/sql/upgrade/*--$(EXTVERSION)))
DATA = $(filter-out sql/rl_mlops--$(EXTVERSION).sql $(UPGRADES),\
	$(wildcard sql/rl_mlops--*.sql))
DATA_built = sql/rl_mlops--$(EXTVERSION).sql $(UPGRADES) rl_mlops_chart.min.js

# The dashboard inlines Chart.js from Debian's libjs-chart.js (make deps),
# installed beside the SQL files: the page fetches nothing.
CHART_JS = /usr/share/javascript/chart.js/chart.min.js

# PGXS would run clang over the torch headers to emit bitcode: do not.
override with_llvm = no

# Our own code is warning-free; PostgreSQL's headers need these three off.
PG_CFLAGS = -Wall -Wextra -Werror -Wno-unused-parameter \
	-Wno-missing-field-initializers -Wno-sign-compare
PG_CPPFLAGS = $(addprefix -I$(srcdir)/src/,core common extension trainer) -I$(srcdir)/src

# -O3 -fno-math-errno -fno-trapping-math let GCC vectorise the shim's
# elementwise loops (Adam, tanh); none changes a result (no fast-math).
# -ffp-contract=off: the shim's AVX-512 clones (target_clones) would
# otherwise fuse multiply-adds and round differently from the baseline.
# libblas.so.3 is libtorch_cpu's own BLAS: the shim calls its sgemm_.
TORCH_CXXFLAGS = -std=c++17 -O3 -fno-math-errno -fno-trapping-math -fPIC \
	-ffp-contract=off \
	-Wall -Wextra -Werror -D_GLIBCXX_USE_CXX11_ABI=1 \
	-isystem /usr/include/torch/csrc/api/include
TORCH_LIBS = -ltorch -ltorch_cpu -lc10 -l:libblas.so.3 -lstdc++

# Both libraries may end up in one worker process (the trainer calls SQL
# functions of rl_mlops.so); -Bsymbolic keeps each bound to its own copies.
SHLIB_LINK = -lm -Wl,-Bsymbolic

EXTRA_CLEAN = $(TRAINER)$(DLSUFFIX) $(TRAINER_OBJS)

PGXS := $(shell $(PG_CONFIG) --pgxs 2>/dev/null)
ifneq ($(PGXS),)
include $(PGXS)
else
# Before 'make deps' there is no pg_config: only deps, test and demo work.
all install:
	@echo "pg_config for PostgreSQL 15 not found: run 'make deps' first" >&2; exit 1
endif

all: $(TRAINER)$(DLSUFFIX)

# PGXS tracks no header dependencies: rebuild every object when any of our
# headers changes (shared structs must agree between the two libraries).
$(OBJS) $(TRAINER_OBJS): $(wildcard $(srcdir)/src/*/*.h)

sql/rl_mlops--$(EXTVERSION).sql: $(INSTALL_PARTS)
	cat $(INSTALL_PARTS) > $@

rl_mlops_chart.min.js: $(CHART_JS)
	cp $(CHART_JS) $@

sql/rl_mlops--%--$(EXTVERSION).sql: sql/upgrade/%--$(EXTVERSION)/before.sql \
		sql/upgrade/%--$(EXTVERSION)/after.sql $(INSTALL_PARTS)
	cat $< $(INSTALL_PARTS) $(word 2,$^) > $@

src/torch/rl_torch.o: src/torch/rl_torch.cpp src/torch/rl_torch.h \
		src/torch/rl_torch_internal.h src/core/rl_arch.h
	$(CXX) $(TORCH_CXXFLAGS) -c -o $@ $<

$(TRAINER)$(DLSUFFIX): $(TRAINER_OBJS)
	$(CXX) -shared -o $@ $(TRAINER_OBJS) $(LDFLAGS) $(LDFLAGS_SL) \
		-Wl,-Bsymbolic $(TORCH_LIBS) -lm

install: install-trainer

install-trainer: $(TRAINER)$(DLSUFFIX) installdirs
	$(INSTALL_SHLIB) $(TRAINER)$(DLSUFFIX) '$(DESTDIR)$(pkglibdir)/$(TRAINER)$(DLSUFFIX)'

uninstall: uninstall-trainer

uninstall-trainer:
	rm -f '$(DESTDIR)$(pkglibdir)/$(TRAINER)$(DLSUFFIX)'

.PHONY: deps test demo install-trainer uninstall-trainer

deps:
	@sh tools/deps.sh

test: deps
	$(MAKE) all
	$(MAKE) install
	@bash test/run_all.sh

demo: deps
	$(MAKE) all
	$(MAKE) install
	@bash tools/demo.sh
