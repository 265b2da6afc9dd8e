/* The no-logic floor of scripts/bench/peers.py: a UDP responder on
 * 127.0.0.1:PORT that answers every query with one fixed A record
 * (127.0.0.1, TTL 300), reading and writing in batches of 32 with
 * recvmmsg/sendmmsg, single-threaded and blocking. No cache, no upstream,
 * no policy: what any server's hit costs at the least on this machine
 * (the kernel's receive and send plus a header rewrite).
 *
 * The reply is the query's header and question with QR and RA set,
 * ANCOUNT 1 and NSCOUNT/ARCOUNT 0 (an EDNS OPT in the query is dropped),
 * then the answer: name pointer 0xC00C, type A, class IN, TTL 300,
 * 127.0.0.1. A datagram that is a reply, has no single question, or whose
 * question runs past its end gets no answer.
 *
 * Build: cc -O2 -o floor floor.c     Run: ./floor 5308 */
#define _GNU_SOURCE
#include <arpa/inet.h>
#include <netinet/in.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>

#define BATCH 32
#define SIZE 512 /* a query past this is cut, so malformed, so dropped */
#define ANSWER_LEN 16

static const unsigned char answer[ANSWER_LEN] = {
    0xC0, 0x0C, 0, 1, 0, 1, 0, 0, 0x01, 0x2C, 0, 4, 127, 0, 0, 1,
};

/* Writes the reply to the query in q[0..n) into r; its length, or 0. */
static size_t reply(const unsigned char *q, size_t n, unsigned char *r) {
    if (n < 12 || (q[2] & 0x80) || q[4] != 0 || q[5] != 1)
        return 0;
    size_t i = 12;
    while (i < n && q[i] != 0) {
        if (q[i] & 0xC0) /* a pointer or a reserved label type */
            return 0;
        i += 1 + q[i];
    }
    i += 1 + 4; /* the root label, QTYPE, QCLASS */
    if (i > n || i - 12 > 255 + 4) /* a name is at most 255 bytes */
        return 0;
    memcpy(r, q, i);
    r[2] = 0x80 | (q[2] & 0x79); /* QR, opcode and RD kept, AA TC cleared */
    r[3] = 0x80;                 /* RA, RCODE NOERROR */
    r[6] = 0, r[7] = 1;          /* ANCOUNT */
    r[8] = r[9] = r[10] = r[11] = 0;
    memcpy(r + i, answer, ANSWER_LEN);
    return i + ANSWER_LEN;
}

int main(int argc, char **argv) {
    if (argc != 2) {
        fprintf(stderr, "usage: floor PORT\n");
        return 2;
    }
    int s = socket(AF_INET, SOCK_DGRAM, 0);
    struct sockaddr_in addr = {.sin_family = AF_INET, .sin_port = htons(atoi(argv[1]))};
    addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    if (s < 0 || bind(s, (struct sockaddr *)&addr, sizeof addr) < 0) {
        perror("floor: bind");
        return 1;
    }
    static unsigned char in[BATCH][SIZE], out[BATCH][SIZE + ANSWER_LEN];
    static struct sockaddr_in from[BATCH];
    static struct iovec iin[BATCH], iout[BATCH];
    static struct mmsghdr rx[BATCH], tx[BATCH];
    for (;;) {
        for (int k = 0; k < BATCH; k++) {
            iin[k] = (struct iovec){in[k], SIZE};
            rx[k].msg_hdr = (struct msghdr){.msg_name = &from[k], .msg_namelen = sizeof from[k],
                                            .msg_iov = &iin[k], .msg_iovlen = 1};
        }
        /* Blocks for the first datagram, then takes what else is queued. */
        int got = recvmmsg(s, rx, BATCH, MSG_WAITFORONE, NULL);
        if (got < 0) {
            perror("floor: recvmmsg");
            continue;
        }
        int m = 0;
        for (int k = 0; k < got; k++) {
            size_t len = (rx[k].msg_hdr.msg_flags & MSG_TRUNC) ? 0 : reply(in[k], rx[k].msg_len, out[m]);
            if (len == 0)
                continue;
            iout[m] = (struct iovec){out[m], len};
            tx[m].msg_hdr = (struct msghdr){.msg_name = &from[k], .msg_namelen = rx[k].msg_hdr.msg_namelen,
                                            .msg_iov = &iout[m], .msg_iovlen = 1};
            m++;
        }
        for (int sent = 0; sent < m;) {
            int n = sendmmsg(s, tx + sent, m - sent, 0);
            if (n < 0) {
                perror("floor: sendmmsg");
                break;
            }
            sent += n;
        }
    }
}
