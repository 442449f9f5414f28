# relayvisor build. Sources are found by wildcard so adding a file needs no edit here:
#   common/ profiles/      -> build/librelayvisor.a (shared by every program)
#   instances/ supervisor/ ctl/: main.c is the program, the rest goes into
#                           build/lib<dir>.a so unit tests can link any module
#   deliver/                -> build/libdeliver.a (delivery engines, no program yet;
#                           check_deliver_* tests and fuzz_deliver_* targets link it)
#   tests/unit/check_*.c    -> build/tests/check_* (one Check binary per module)
# Debian ships no pkg-config files for libev, libcidr and LMDB, hence plain -l.

PREFIX  ?= /usr/local
DESTDIR ?=
CC      ?= cc
VERSION := 0.1.0

YAML_CFLAGS  := $(shell pkg-config --cflags yaml-0.1 2>/dev/null)
YAML_LIBS    := $(shell pkg-config --libs yaml-0.1 2>/dev/null || echo -lyaml)
CHECK_CFLAGS := $(shell pkg-config --cflags check 2>/dev/null)
CHECK_LIBS   := $(shell pkg-config --libs check 2>/dev/null || echo -lcheck -lsubunit -lm -lrt -lpthread)

WARN     := -Wall -Wextra -Werror -Wshadow -Wstrict-prototypes -Wmissing-prototypes
# CFLAGS is the user's knob (optimisation, debug, sanitizers); the language level
# and warnings are always on.
CFLAGS   ?= -O2 -g
XCFLAGS  := -std=c11 $(WARN) $(YAML_CFLAGS) $(CFLAGS)
CPPFLAGS += -D_GNU_SOURCE -DRELAYVISOR_VERSION='"$(VERSION)"' -I. -MMD -MP
# TLS (common/tls.c) is OpenSSL 3 (Debian libssl-dev); password hashes are
# libxcrypt's crypt(3) (Debian libcrypt-dev)
SSL_LIBS := $(shell pkg-config --libs libssl libcrypto 2>/dev/null || echo -lssl -lcrypto)
LDLIBS   := -lev -lcidr -llmdb $(YAML_LIBS) $(SSL_LIBS) -lcrypt -lm -pthread

.DEFAULT_GOAL := all

B ?= build
BINDIR ?= bin
# deliver/route.c too: the configuration checks next hops with it
LIB_SRC  := $(sort $(wildcard common/*.c profiles/*.c) deliver/route.c)
LIB_OBJ  := $(LIB_SRC:%.c=$(B)/%.o)
PROGDIRS := instances supervisor ctl qmgr auth
PROG_instances  := relayvisor-smtpd
PROG_supervisor := relayvisord
PROG_ctl        := relayvisorctl
PROG_qmgr       := relayvisor-qmgr
PROG_auth       := relayvisor-auth
BINS := $(foreach d,$(PROGDIRS),$(BINDIR)/$(PROG_$(d))) $(BINDIR)/relayvisor-deliver

# modules of a program dir (everything but main.c) as a static archive
define progdir
$(d)_MOD := $$(filter-out $(d)/main.c,$$(sort $$(wildcard $(d)/*.c)))
$(d)_MODOBJ := $$($(d)_MOD:%.c=$(B)/%.o)
$(B)/lib$(d).a: $$($(d)_MODOBJ)
	@mkdir -p $$(@D)
	rm -f $$@ && $$(AR) rcs $$@ $$^
$(BINDIR)/$(PROG_$(d)): $(B)/$(d)/main.o $(B)/lib$(d).a $(B)/librelayvisor.a
	@mkdir -p $$(@D)
	$$(CC) $$(XCFLAGS) $$(LDFLAGS) -o $$@ $$^ $$(LDLIBS)
endef
$(foreach d,$(PROGDIRS),$(eval $(progdir)))
# relayvisorctl's prompt edits lines with libedit (Debian libedit-dev)
EDIT_LIBS := -ledit
$(BINDIR)/$(PROG_ctl): LDLIBS += $(EDIT_LIBS)
# delivery engines (SMTP/LMTP client, DNS, routing, Maildir, DSN, scheduling); DNS
# uses c-ares (Debian libc-ares-dev)
CARES_LIBS := $(shell pkg-config --libs libcares 2>/dev/null || echo -lcares)
DELIVER_OBJ := $(patsubst %.c,$(B)/%.o,$(filter-out deliver/main.c,$(sort $(wildcard deliver/*.c))))
$(B)/libdeliver.a: $(DELIVER_OBJ)
	@mkdir -p $(@D)
	rm -f $@ && $(AR) rcs $@ $^
# the queue manager uses the scheduling, routing and DSN engines; the delivery
# agent (deliver/main.c) all of them
$(BINDIR)/$(PROG_qmgr): $(B)/libdeliver.a
$(BINDIR)/$(PROG_qmgr): LDLIBS := $(B)/libdeliver.a $(B)/librelayvisor.a $(LDLIBS)
$(BINDIR)/relayvisor-deliver: $(B)/deliver/main.o $(B)/libdeliver.a $(B)/librelayvisor.a
	@mkdir -p $(@D)
	$(CC) $(XCFLAGS) $(LDFLAGS) -o $@ $^ $(LDLIBS) $(CARES_LIBS)

UNIT_SRC  := $(sort $(wildcard tests/unit/check_*.c))
UNIT_BINS := $(UNIT_SRC:tests/unit/%.c=$(B)/tests/%)

.PHONY: all check unit-bins run install install-user clean deps fuzz fuzz-bins fuzz-link sanitize
all: $(BINS) $(B)/libdeliver.a

$(B)/librelayvisor.a: $(LIB_OBJ)
	@mkdir -p $(@D)
	rm -f $@ && $(AR) rcs $@ $^

$(B)/%.o: %.c
	@mkdir -p $(@D)
	$(CC) $(CPPFLAGS) $(XCFLAGS) -c -o $@ $<

$(B)/tests/%.o: tests/unit/%.c
	@mkdir -p $(@D)
	$(CC) $(CPPFLAGS) $(XCFLAGS) $(CHECK_CFLAGS) -c -o $@ $<

# A test links librelayvisor.a, plus the program archive its name starts with:
# check_smtpd_* -> libinstances.a, check_super_* -> libsupervisor.a, check_ctl_* -> libctl.a,
# check_auth_* -> libauth.a
TEST_LINK = $(CC) $(XCFLAGS) $(LDFLAGS) -o $@ $^ $(LDLIBS) $(CHECK_LIBS)
# every unit binary links the shared helpers (tests/unit/testutil.[ch])
TESTUTIL := $(B)/tests/testutil.o
$(B)/tests/check_smtpd_%: $(B)/tests/check_smtpd_%.o $(TESTUTIL) $(B)/libinstances.a $(B)/librelayvisor.a
	$(TEST_LINK)
$(B)/tests/check_super_%: $(B)/tests/check_super_%.o $(TESTUTIL) $(B)/libsupervisor.a $(B)/librelayvisor.a
	$(TEST_LINK)
$(B)/tests/check_ctl_%: $(B)/tests/check_ctl_%.o $(TESTUTIL) $(B)/libctl.a $(B)/librelayvisor.a
	$(TEST_LINK) $(EDIT_LIBS)
$(B)/tests/check_deliver_%: $(B)/tests/check_deliver_%.o $(TESTUTIL) $(B)/libdeliver.a $(B)/librelayvisor.a
	$(TEST_LINK) $(CARES_LIBS)
$(B)/tests/check_auth_%: $(B)/tests/check_auth_%.o $(TESTUTIL) $(B)/libauth.a $(B)/librelayvisor.a
	$(TEST_LINK)
$(B)/tests/check_%: $(B)/tests/check_%.o $(TESTUTIL) $(B)/librelayvisor.a
	$(TEST_LINK)

# helper programs the integration tests drive (tests/tools/<name>.c -> build/tests/<name>)
TOOL_SRC  := $(sort $(wildcard tests/tools/*.c))
TOOL_BINS := $(TOOL_SRC:tests/tools/%.c=$(B)/tests/%)
$(B)/tests/tools/%.o: tests/tools/%.c
	@mkdir -p $(@D)
	$(CC) $(CPPFLAGS) $(XCFLAGS) -c -o $@ $<
$(TOOL_BINS): $(B)/tests/%: $(B)/tests/tools/%.o $(B)/librelayvisor.a
	$(CC) $(XCFLAGS) $(LDFLAGS) -o $@ $^ $(LDLIBS)

unit-bins: $(UNIT_BINS) $(TOOL_BINS)

# libFuzzer targets (clang): tests/fuzz/fuzz_<name>.c, seeds in tests/fuzz/corpus/<name>/.
# `make fuzz FUZZ_SECONDS=600` runs each target; new inputs go to build/fuzz/corpus-<name>
# so the committed seeds stay as they are. `make check` runs each briefly.
FUZZ_SECONDS ?= 60
FUZZ_TARGETS := $(patsubst tests/fuzz/fuzz_%.c,%,$(wildcard tests/fuzz/fuzz_*.c))
FUZZ_CFLAGS  := -O1 -g -fno-omit-frame-pointer -fsanitize=fuzzer-no-link,address,undefined \
	-fno-sanitize-recover=undefined
fuzz-bins:
	@$(MAKE) --no-print-directory B=$(B)/fuzz BINDIR=$(B)/fuzz/bin CC=clang \
		CFLAGS='$(FUZZ_CFLAGS)' fuzz-link
fuzz-link: $(patsubst %,$(B)/fuzz_%,$(FUZZ_TARGETS))
$(B)/fuzz_deliver_%: tests/fuzz/fuzz_deliver_%.c $(B)/libdeliver.a $(B)/librelayvisor.a
	$(CC) $(CPPFLAGS) $(XCFLAGS) -fsanitize=fuzzer -o $@ $(filter %.c %.a,$^) $(LDLIBS) $(CARES_LIBS)
$(B)/fuzz_%: tests/fuzz/fuzz_%.c $(B)/libinstances.a $(B)/librelayvisor.a
	$(CC) $(CPPFLAGS) $(XCFLAGS) -fsanitize=fuzzer -o $@ $(filter %.c %.a,$^) $(LDLIBS)
fuzz: fuzz-bins
	@for t in $(FUZZ_TARGETS); do \
		mkdir -p $(B)/fuzz/corpus-$$t && \
		$(B)/fuzz/fuzz_$$t -max_total_time=$(FUZZ_SECONDS) -print_final_stats=1 -close_fd_mask=2 \
			-artifact_prefix=$(B)/fuzz/crash-$$t- \
			$(B)/fuzz/corpus-$$t tests/fuzz/corpus/$$t || exit 1; \
	done

# ASan + UBSan + LeakSanitizer build of everything, in build/asan (scripts/check.d
# runs the unit and integration suites against it).
SAN_CFLAGS := -O1 -g -fno-omit-frame-pointer -fsanitize=address,undefined \
	-fno-sanitize-recover=all
sanitize:
	@$(MAKE) --no-print-directory B=$(B)/asan BINDIR=$(B)/asan/bin \
		CFLAGS='$(SAN_CFLAGS)' LDFLAGS='-fsanitize=address,undefined' all unit-bins

deps:
	@sh scripts/deps.sh

# Every suite; the last line totals them all: "N passed, M failed".
# builds use every core (JOBS): on CI's 2 cores the three builds (plain,
# sanitizers, fuzzers) were a third of the run at -j1
JOBS ?= $(shell nproc 2>/dev/null || echo 2)
check: deps
	@$(MAKE) --no-print-directory -j$(JOBS) all unit-bins
	@B=$(B) JOBS=$(JOBS) RV_BIN=$(abspath $(BINDIR)) sh scripts/check.sh

# the submission instance's certificate and demo user are made once, under ./var
run: deps
	@$(MAKE) --no-print-directory all
	@mkdir -p var
	@RELAYVISORCTL=$(BINDIR)/relayvisorctl sh scripts/demo-secrets.sh var
	exec $(BINDIR)/relayvisord -n -c conf.d

# install: programs, man pages, the systemd unit, docs and examples; the
# configuration (/etc/relayvisor/conf.d, /etc/logrotate.d/relayvisor) only on the
# first install, so a file the administrator removed or moved never comes back;
# the system user and group relayvisor (server.user of the installed
# configuration), unless DESTDIR is set (a staging tree, e.g. for a package).
MANDIR     ?= $(PREFIX)/share/man
DOCDIR     ?= $(PREFIX)/share/doc/relayvisor
UNITDIR    ?= $(PREFIX)/lib/systemd/system
SYSCONFDIR := /etc/relayvisor
RUN_USER   := relayvisor
install: all
	install -d $(DESTDIR)$(PREFIX)/bin $(DESTDIR)$(PREFIX)/sbin \
		$(DESTDIR)$(MANDIR)/man5 $(DESTDIR)$(MANDIR)/man8 $(DESTDIR)$(UNITDIR) \
		$(DESTDIR)$(DOCDIR)/examples/conf.d $(DESTDIR)$(DOCDIR)/examples/logrotate \
		$(DESTDIR)$(DOCDIR)/examples/fail2ban/filter.d $(DESTDIR)$(DOCDIR)/examples/fail2ban/jail.d
	install -m 0755 $(BINDIR)/relayvisorctl $(DESTDIR)$(PREFIX)/bin/
	install -m 0755 $(BINDIR)/relayvisord $(BINDIR)/relayvisor-smtpd $(BINDIR)/relayvisor-qmgr $(BINDIR)/relayvisor-deliver $(BINDIR)/relayvisor-auth $(DESTDIR)$(PREFIX)/sbin/
	install -m 0644 man/*.5 $(DESTDIR)$(MANDIR)/man5/
	install -m 0644 man/*.8 $(DESTDIR)$(MANDIR)/man8/
	sed 's|@SBINDIR@|$(PREFIX)/sbin|g' contrib/systemd/relayvisord.service \
		>$(DESTDIR)$(UNITDIR)/relayvisord.service
	chmod 0644 $(DESTDIR)$(UNITDIR)/relayvisord.service
	install -m 0644 README.md contrib/pflogsumm.md $(DESTDIR)$(DOCDIR)/
	install -m 0644 contrib/etc/conf.d/*.yaml conf.d/20-instances.yaml \
		$(DESTDIR)$(DOCDIR)/examples/conf.d/
	install -m 0644 contrib/logrotate/relayvisor $(DESTDIR)$(DOCDIR)/examples/logrotate/
	install -m 0644 contrib/fail2ban/filter.d/relayvisor.conf \
		$(DESTDIR)$(DOCDIR)/examples/fail2ban/filter.d/
	install -m 0644 contrib/fail2ban/jail.d/relayvisor.conf \
		$(DESTDIR)$(DOCDIR)/examples/fail2ban/jail.d/
	@if [ -e $(DESTDIR)$(SYSCONFDIR) ]; then \
		echo "install: $(DESTDIR)$(SYSCONFDIR) exists: configuration left as it is" \
		     "(examples in $(DOCDIR)/examples)"; \
	else \
		echo "install: first install: configuration to $(DESTDIR)$(SYSCONFDIR)/conf.d"; \
		install -d $(DESTDIR)$(SYSCONFDIR)/conf.d $(DESTDIR)/etc/logrotate.d && \
		install -m 0644 $(DESTDIR)$(DOCDIR)/examples/conf.d/*.yaml \
			$(DESTDIR)$(SYSCONFDIR)/conf.d/ && \
		{ [ -e $(DESTDIR)/etc/logrotate.d/relayvisor ] || \
		  install -m 0644 contrib/logrotate/relayvisor $(DESTDIR)/etc/logrotate.d/; }; \
	fi
	@if [ -n "$(DESTDIR)" ]; then \
		echo "install: DESTDIR set: user $(RUN_USER) not created"; \
	else \
		$(MAKE) --no-print-directory install-user; \
	fi

# the system user and group the installed configuration names; idempotent
install-user:
	@if ! getent group $(RUN_USER) >/dev/null; then \
		echo "install: creating system group $(RUN_USER)"; \
		groupadd --system $(RUN_USER); \
	fi
	@if ! getent passwd $(RUN_USER) >/dev/null; then \
		echo "install: creating system user $(RUN_USER)"; \
		useradd --system --gid $(RUN_USER) --home-dir /var/lib/relayvisor \
			--no-create-home --shell /usr/sbin/nologin \
			--comment "relayvisor SMTP listeners" $(RUN_USER); \
	fi

clean:
	rm -rf $(B) $(BINDIR)

-include $(shell find $(B) -name '*.d' 2>/dev/null)
