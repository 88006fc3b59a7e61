/*
 * refresponder: the least an NTP server can do per request, as a ceiling for
 * the server benchmark (internal/ntpload/bench). Each thread has its own
 * SO_REUSEPORT socket, reads requests with recvmmsg (with the kernel's
 * receive timestamp, SO_TIMESTAMPNS, unless -n), answers every well-formed
 * client request with a stratum-1 response (origin = the request's transmit
 * timestamp, receive = the kernel's timestamp, transmit = the clock just
 * before the send) and sends the batch with one sendmmsg. No client table,
 * no rate limit, no access control, no statistics.
 *
 *   gcc -O2 -o refresponder refresponder.c -lpthread
 *   refresponder [-t THREADS] [-n] ADDRESS PORT
 *
 * It runs until killed. Written for this project; IPv4 only.
 */
#define _GNU_SOURCE
#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <pthread.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#define BATCH 64
#define BUFLEN 128
#define NTP_HEADER 48
#define NTP_UNIX_OFFSET 2208988800ULL

static struct sockaddr_in listen_addr;
static int use_kernel_stamps = 1;

static uint64_t ntp_time(const struct timespec *ts)
{
	uint64_t sec = (uint64_t)ts->tv_sec + NTP_UNIX_OFFSET;
	uint64_t frac = ((uint64_t)ts->tv_nsec << 32) / 1000000000ULL;
	return sec << 32 | frac;
}

static void put64(unsigned char *p, uint64_t v)
{
	for (int i = 7; i >= 0; i--) {
		p[i] = (unsigned char)v;
		v >>= 8;
	}
}

static int open_socket(void)
{
	int fd = socket(AF_INET, SOCK_DGRAM, 0);
	int one = 1;
	if (fd < 0) {
		perror("socket");
		exit(1);
	}
	if (setsockopt(fd, SOL_SOCKET, SO_REUSEPORT, &one, sizeof one) < 0) {
		perror("SO_REUSEPORT");
		exit(1);
	}
	if (use_kernel_stamps && setsockopt(fd, SOL_SOCKET, SO_TIMESTAMPNS, &one, sizeof one) < 0) {
		perror("SO_TIMESTAMPNS");
		exit(1);
	}
	if (bind(fd, (struct sockaddr *)&listen_addr, sizeof listen_addr) < 0) {
		perror("bind");
		exit(1);
	}
	return fd;
}

static void *serve(void *arg)
{
	int fd = (int)(intptr_t)arg;
	static __thread unsigned char bufs[BATCH][BUFLEN];
	static __thread unsigned char ctrl[BATCH][CMSG_SPACE(sizeof(struct timespec))];
	static __thread struct sockaddr_in names[BATCH];
	static __thread struct iovec iov[BATCH], out_iov[BATCH];
	static __thread struct mmsghdr msgs[BATCH], out[BATCH];

	for (int i = 0; i < BATCH; i++) {
		iov[i].iov_base = bufs[i];
		iov[i].iov_len = BUFLEN;
		msgs[i].msg_hdr.msg_iov = &iov[i];
		msgs[i].msg_hdr.msg_iovlen = 1;
		out_iov[i].iov_base = bufs[i];
		out_iov[i].iov_len = NTP_HEADER;
		out[i].msg_hdr.msg_iov = &out_iov[i];
		out[i].msg_hdr.msg_iovlen = 1;
	}
	for (;;) {
		for (int i = 0; i < BATCH; i++) {
			msgs[i].msg_hdr.msg_name = &names[i];
			msgs[i].msg_hdr.msg_namelen = sizeof names[i];
			msgs[i].msg_hdr.msg_control = ctrl[i];
			msgs[i].msg_hdr.msg_controllen = sizeof ctrl[i];
		}
		int n = recvmmsg(fd, msgs, BATCH, MSG_WAITFORONE, NULL);
		if (n < 0) {
			if (errno == EINTR)
				continue;
			perror("recvmmsg");
			exit(1);
		}
		struct timespec now;
		clock_gettime(CLOCK_REALTIME, &now);
		int m = 0;
		for (int i = 0; i < n; i++) {
			unsigned char *p = bufs[i];
			unsigned vn = p[0] >> 3 & 7, mode = p[0] & 7;
			if (msgs[i].msg_len < NTP_HEADER || mode != 3 || vn < 1 || vn > 4)
				continue;
			struct timespec rx = now;
			if (use_kernel_stamps) {
				for (struct cmsghdr *c = CMSG_FIRSTHDR(&msgs[i].msg_hdr); c; c = CMSG_NXTHDR(&msgs[i].msg_hdr, c))
					if (c->cmsg_level == SOL_SOCKET && c->cmsg_type == SCM_TIMESTAMPNS)
						memcpy(&rx, CMSG_DATA(c), sizeof rx);
			}
			unsigned char poll = p[2];
			memmove(p + 24, p + 40, 8); /* origin = the request's transmit */
			p[0] = (unsigned char)(vn << 3 | 4);
			p[1] = 1;
			p[2] = poll;
			p[3] = (unsigned char)-20;
			memset(p + 4, 0, 8);  /* root delay, root dispersion */
			memcpy(p + 12, "LOCL", 4);
			put64(p + 16, ntp_time(&now) & ~0xffffffffULL);
			put64(p + 32, ntp_time(&rx));
			out[m].msg_hdr.msg_name = &names[i];
			out[m].msg_hdr.msg_namelen = msgs[i].msg_hdr.msg_namelen;
			out_iov[m].iov_base = p;
			m++;
		}
		if (m == 0)
			continue;
		clock_gettime(CLOCK_REALTIME, &now);
		uint64_t tx = ntp_time(&now);
		for (int i = 0; i < m; i++)
			put64((unsigned char *)out_iov[i].iov_base + 40, tx);
		for (int sent = 0; sent < m;) {
			int r = sendmmsg(fd, out + sent, (unsigned)(m - sent), 0);
			if (r < 0) {
				if (errno == EINTR)
					continue;
				break; /* dropped, as a server under load would */
			}
			sent += r;
		}
	}
	return NULL;
}

int main(int argc, char **argv)
{
	int threads = 1, opt;
	while ((opt = getopt(argc, argv, "t:n")) != -1) {
		switch (opt) {
		case 't':
			threads = atoi(optarg);
			break;
		case 'n':
			use_kernel_stamps = 0;
			break;
		default:
			goto usage;
		}
	}
	if (argc - optind != 2 || threads < 1 || threads > 256)
		goto usage;
	listen_addr.sin_family = AF_INET;
	listen_addr.sin_port = htons((unsigned short)atoi(argv[optind + 1]));
	if (inet_pton(AF_INET, argv[optind], &listen_addr.sin_addr) != 1)
		goto usage;
	int fds[256];
	for (int i = 0; i < threads; i++)
		fds[i] = open_socket(); /* all bound before any serves */
	for (int i = 1; i < threads; i++) {
		pthread_t t;
		if (pthread_create(&t, NULL, serve, (void *)(intptr_t)fds[i]) != 0) {
			fprintf(stderr, "pthread_create failed\n");
			return 1;
		}
	}
	fprintf(stderr, "refresponder: serving on %s port %s with %d thread(s)%s\n", argv[optind], argv[optind + 1],
		threads, use_kernel_stamps ? ", kernel receive timestamps" : "");
	serve((void *)(intptr_t)fds[0]);
	return 0;
usage:
	fprintf(stderr, "usage: refresponder [-t THREADS] [-n] ADDRESS PORT\n");
	return 2;
}
