# A thin layer over CMake.  `make run` and `make test` are the two commands a new machine
# needs; both install what is missing first (scripts/install-deps, Debian 12, as root).
BUILD      ?= build
JOBS       ?= $(shell nproc)
CMAKE_ARGS ?=
RUN_ARGS   ?=

.PHONY: all deps build run test test-normal test-asan test-tsan test-systemd bench install clean

all: build

deps:
	@scripts/install-deps

build: deps
	cmake -S . -B $(BUILD) -DCMAKE_BUILD_TYPE=RelWithDebInfo $(CMAKE_ARGS)
	cmake --build $(BUILD) -j $(JOBS)

# Start the daemon in the foreground with its defaults (as root: /run/pinpool/pinpool.sock;
# otherwise, unless PINPOOL_SOCKET says where, a socket in the build folder).  It prints
# how to connect.
run: build
	@if [ "$$(id -u)" -ne 0 ] && [ -z "$$PINPOOL_SOCKET" ]; then \
	  export PINPOOL_SOCKET="$(abspath $(BUILD))/pinpool.sock"; fi; \
	exec $(BUILD)/bin/pinpoold $(RUN_ARGS)

# The suite twice (normal, then ASan+UBSan with validators after every state change; the
# "heavy" label, measurements of memory with 10,000 clients, only in the normal build),
# and the threaded tests a third time under ThreadSanitizer.
test: deps test-normal test-asan test-tsan
	@echo "make test: normal, ASan+UBSan and TSan runs passed"

test-normal:
	cmake -S . -B $(BUILD) -DCMAKE_BUILD_TYPE=RelWithDebInfo -DPP_WERROR=ON $(CMAKE_ARGS)
	cmake --build $(BUILD) -j $(JOBS)
	ctest --test-dir $(BUILD) --output-on-failure -j $(JOBS)

test-asan:
	cmake -S . -B build-asan -DCMAKE_BUILD_TYPE=Debug -DPP_DEBUG=3 -DPP_WERROR=ON \
	  -DPP_SANITIZE=address,undefined -DPP_BUILD_BENCH=OFF $(CMAKE_ARGS)
	cmake --build build-asan -j $(JOBS)
	ASAN_OPTIONS=detect_leaks=1:abort_on_error=1 UBSAN_OPTIONS=print_stacktrace=1:halt_on_error=1 \
	  ctest --test-dir build-asan --output-on-failure -j $(JOBS) -LE heavy

test-tsan:
	cmake -S . -B build-tsan -DCMAKE_BUILD_TYPE=RelWithDebInfo -DPP_DEBUG=1 -DPP_WERROR=ON \
	  -DPP_SANITIZE=thread -DPP_BUILD_BENCH=OFF $(CMAKE_ARGS)
	cmake --build build-tsan -j $(JOBS)
	TSAN_OPTIONS=halt_on_error=1:second_deadlock_stack=1 \
	  ctest --test-dir build-tsan --output-on-failure -j $(JOBS) -L threaded

# Only the tests that boot a real systemd (tests/systemd; also part of test-normal).
test-systemd:
	cmake -S . -B $(BUILD) -DCMAKE_BUILD_TYPE=RelWithDebInfo -DPP_WERROR=ON $(CMAKE_ARGS)
	cmake --build $(BUILD) -j $(JOBS)
	ctest --test-dir $(BUILD) --output-on-failure -L systemd

bench:
	@scripts/install-deps --bench
	cmake -S . -B $(BUILD) -DCMAKE_BUILD_TYPE=RelWithDebInfo -DPP_BUILD_BENCH=ON $(CMAKE_ARGS)
	cmake --build $(BUILD) -j $(JOBS)
	$(BUILD)/bin/pinpool-bench all

# As root without DESTDIR this also creates the pinpool group (systemd-sysusers on the
# installed sysusers.d entry); otherwise it prints the command for the target system.
install: build
	cmake --install $(BUILD)

clean:
	rm -rf $(BUILD) build-asan build-tsan
