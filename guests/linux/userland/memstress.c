/*
 * memstress: the paper's memory-stress workload for the Linux guest. Fills a buffer of
 * argv[1] MiB (default 32) with an xorshift64 stream, then makes argv[2] (default 4) passes of
 * dependent random read-modify-writes over it, and prints a checksum of the final contents. The
 * checksum depends on every store landing: a lost or corrupted write changes it. The host build
 * script runs the same computation natively to record the expected value.
 */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>

static uint64_t next(uint64_t *s) {
	uint64_t x = *s;
	x ^= x << 13;
	x ^= x >> 7;
	x ^= x << 17;
	return *s = x;
}

int main(int argc, char **argv) {
	size_t mib = argc > 1 ? strtoul(argv[1], 0, 10) : 32;
	unsigned passes = argc > 2 ? strtoul(argv[2], 0, 10) : 4;
	size_t words = mib * 1024 * 1024 / sizeof(uint64_t);
	uint64_t *buf = malloc(words * sizeof(uint64_t));
	if (!buf) {
		printf("memstress: FAIL no memory for %zu MiB\n", mib);
		return 1;
	}
	uint64_t s = 0x9e3779b97f4a7c15ull;
	for (size_t i = 0; i < words; i++) buf[i] = next(&s);
	for (unsigned p = 0; p < passes; p++) {
		for (size_t n = 0; n < words; n++) {
			size_t i = next(&s) % words;
			size_t j = (i * 2654435761u + buf[i]) % words;
			buf[j] += buf[i] ^ n;
		}
	}
	uint64_t sum = 0xcbf29ce484222325ull;
	for (size_t i = 0; i < words; i++) sum = (sum ^ buf[i]) * 0x100000001b3ull;
	printf("memstress: %zu MiB %u passes checksum=%016llx\n", mib, passes, (unsigned long long)sum);
	return 0;
}
