/*
 * /init of kmemvisor's Linux test boot, built static against the kernel's nolibc.
 *
 * It exercises what a boot test should see working: fork (copy-on-write page
 * faults), a child and its parent computing at once, a file written by one process
 * in a ramfs and read back by the other, /proc, and power-off through SBI SRST.
 * The printed checksum is fixed for every machine, so the test can check it; the
 * hart count says whether SMP brought every hart up.
 */
/* (nolibc.h, included by the build, defines the LINUX_REBOOT_* constants.) */

#define ROUNDS 100000

/* xorshift64 stream folded with FNV-1a (64-bit): cheap, and any wrong
 * shift, xor or multiply changes the result. */
static unsigned long part(unsigned long seed)
{
	unsigned long x = seed, h = 0xcbf29ce484222325UL;

	for (int i = 0; i < ROUNDS; i++) {
		x ^= x << 13;
		x ^= x >> 7;
		x ^= x << 17;
		h = (h ^ x) * 0x100000001b3UL;
	}
	return h;
}

static int count_harts(void)
{
	static char buf[8192];
	int fd = open("/proc/cpuinfo", O_RDONLY);
	int n = 0;
	ssize_t len, got = 0;

	if (fd < 0)
		return -1;
	while (got < (ssize_t)sizeof(buf) - 1 &&
	       (len = read(fd, buf + got, sizeof(buf) - 1 - got)) > 0)
		got += len;
	close(fd);
	buf[got] = 0;
	/* One "processor\t: N" line per hart that came up. */
	for (char *p = buf; *p; p++)
		if ((p == buf || p[-1] == '\n') && strncmp(p, "processor", 9) == 0)
			n++;
	return n;
}

static void finish(const char *why)
{
	if (why)
		printf("init: FAIL %s\n", why);
	reboot(LINUX_REBOOT_CMD_POWER_OFF);
	for (;;)
		;
}

int main(void)
{
	unsigned long mine, theirs = 0, expect;
	int status = -1, fd;
	pid_t pid;

	if (mount("ramfs", "/tmp", "ramfs", 0, NULL) < 0)
		finish("mount /tmp");
	if (mount("proc", "/proc", "proc", 0, NULL) < 0)
		finish("mount /proc");

	pid = fork();
	if (pid < 0)
		finish("fork");
	if (pid == 0) {
		unsigned long v = part(1);

		fd = open("/tmp/child", O_WRONLY | O_CREAT | O_TRUNC, 0644);
		if (fd < 0 || write(fd, &v, sizeof(v)) != sizeof(v) || close(fd) < 0)
			exit(2);
		exit(0);
	}
	mine = part(2);
	if (waitpid(pid, &status, 0) != pid || status != 0)
		finish("child exit status");
	fd = open("/tmp/child", O_RDONLY);
	if (fd < 0 || read(fd, &theirs, sizeof(theirs)) != sizeof(theirs))
		finish("read /tmp/child");
	close(fd);
	/* Recompute the child's half here: a value damaged on its way through the
	 * child, the page cache or the copy-on-write pages must not pass. */
	expect = part(1);
	if (theirs != expect) {
		printf("init: FAIL child wrote %lx, expected %lx\n", theirs, expect);
		finish(NULL);
	}
	printf("init: ok checksum=%lx harts=%d\n", mine ^ theirs, count_harts());
	finish(NULL);
	return 0;
}
