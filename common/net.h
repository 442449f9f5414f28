/*
 * Lists of networks (LAN, access lists), parsed once at load with libcidr. An entry
 * is an address (IPv4 or IPv6), a CIDR block, or an IPv4 address with trailing octet
 * wildcards ("192.168.1.*", "10.*.*.*"). Matching treats an IPv4-mapped IPv6 client
 * (::ffff:a.b.c.d) as the IPv4 address it carries.
 */
#ifndef RELAYVISOR_NET_H
#define RELAYVISOR_NET_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/socket.h>

struct netlist;

struct netlist *netlist_new(void);
void netlist_free(struct netlist *nl);
/* -1 and *error_r (static text, says what was expected) when entry is malformed */
int netlist_add(struct netlist *nl, const char *entry, const char **error_r);
size_t netlist_count(const struct netlist *nl);
/* the i-th entry as written */
const char *netlist_entry(const struct netlist *nl, size_t i);
bool netlist_match(const struct netlist *nl, const struct sockaddr *sa);
/* textual client address ("192.0.2.7", "::1", "::ffff:10.0.0.1"); false if unparsable */
bool netlist_match_str(const struct netlist *nl, const char *ip);
/* the entry covers every address of its family (0.0.0.0/0, ::/0, *.*.*.*) */
bool net_entry_covers_all(const char *entry);
/* over-wide for a LAN: covers everything, or a public block of /8 or wider */
bool net_entry_overwide(const char *entry);
/*
 * The open-relay measure of a LAN: AF_INET when the union of the IPv4 entries
 * holds more public addresses than a /8 (2^24), AF_INET6 when the IPv6 ones
 * hold more than a /16 (2^112), else 0. Entries are judged together, so
 * 0.0.0.0/1 plus 128.0.0.0/1 counts like 0.0.0.0/0. Private, loopback,
 * link-local, shared (100.64/10), multicast and reserved space is not public.
 */
int netlist_public_span(const struct netlist *nl);
/* every address of the sockaddr's family is loopback (127/8, ::1) */
bool net_sockaddr_is_loopback(const struct sockaddr *sa);
/* text ("192.0.2.7", "2001:db8::1") to a sockaddr with port; its length in
   *len_r when not NULL; -1 when it is neither an IPv4 nor an IPv6 address */
int net_sockaddr_parse(const char *text, uint16_t port, struct sockaddr_storage *ss,
    socklen_t *len_r);
/* the address a sockaddr carries, an IPv4-mapped IPv6 one unwrapped: family
   AF_INET (4 octets) or AF_INET6 (16); false when it is not IP */
bool net_sockaddr_unmap(const struct sockaddr *sa, int *family, unsigned char addr[16]);
/* the same host (IPv4-mapped and plain IPv4 compare equal; ports ignored) */
bool net_sockaddr_same_host(const struct sockaddr *a, const struct sockaddr *b);
/* "192.0.2.7" / "2001:db8::1" (IPv4-mapped shown as IPv4); buf >= 64 */
const char *net_sockaddr_ntop(const struct sockaddr *sa, char *buf, size_t len);

#endif
