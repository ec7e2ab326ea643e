/*
 * seqio: the paper's sequential I/O workload. Writes argv[2] MiB (default 16) of a position-
 * dependent pattern to the file argv[1] in 64 KiB writes, fsyncs, drops nothing from the page
 * cache it cannot (reading back may come from the cache or the disk), reads it back in 64 KiB
 * reads, checks every byte and prints the bytes moved and a checksum of what was read.
 */
#include <fcntl.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <unistd.h>

#define CHUNK (64 * 1024)

static uint8_t pattern(uint64_t pos) { return (uint8_t)((pos * 131) ^ (pos >> 11) ^ (pos >> 19)); }

int main(int argc, char **argv) {
	const char *path = argc > 1 ? argv[1] : "/mnt/seqio.dat";
	uint64_t total = (argc > 2 ? strtoull(argv[2], 0, 10) : 16) * 1024 * 1024;
	static uint8_t buf[CHUNK];
	int fd = open(path, O_CREAT | O_TRUNC | O_WRONLY, 0644);
	if (fd < 0) { perror("seqio: open for writing"); return 1; }
	for (uint64_t pos = 0; pos < total; pos += CHUNK) {
		for (int i = 0; i < CHUNK; i++) buf[i] = pattern(pos + i);
		if (write(fd, buf, CHUNK) != CHUNK) { perror("seqio: write"); return 1; }
	}
	if (fsync(fd) != 0 || close(fd) != 0) { perror("seqio: fsync"); return 1; }
	fd = open(path, O_RDONLY);
	if (fd < 0) { perror("seqio: open for reading"); return 1; }
	uint64_t sum = 0xcbf29ce484222325ull;
	for (uint64_t pos = 0; pos < total; pos += CHUNK) {
		if (read(fd, buf, CHUNK) != CHUNK) { perror("seqio: read"); return 1; }
		for (int i = 0; i < CHUNK; i++) {
			if (buf[i] != pattern(pos + i)) {
				printf("seqio: FAIL byte %llu is %u, wrote %u\n", (unsigned long long)(pos + i), buf[i], pattern(pos + i));
				return 1;
			}
			sum = (sum ^ buf[i]) * 0x100000001b3ull;
		}
	}
	close(fd);
	unlink(path);
	printf("seqio: %llu MiB written and read back checksum=%016llx\n", (unsigned long long)(total >> 20), (unsigned long long)sum);
	return 0;
}
