/*
 * Test certificates made in memory with OpenSSL (no files, no openssl command): a
 * CA, and leaves it signs for a given name. Included by the TLS unit tests only.
 */
#ifndef RELAYVISOR_TLSCERTS_H
#define RELAYVISOR_TLSCERTS_H

#include <stdbool.h>
#include <stdlib.h>
#include <string.h>

#include <openssl/evp.h>
#include <openssl/pem.h>
#include <openssl/x509v3.h>

struct testcert {
	EVP_PKEY *key;
	X509 *cert;
};

static void
testcert_ext(X509 *x, X509 *issuer, int nid, const char *value)
{
	X509V3_CTX v3;
	X509V3_set_ctx(&v3, issuer, x, NULL, NULL, 0);
	X509_EXTENSION *e = X509V3_EXT_conf_nid(NULL, &v3, nid, value);
	if (e == NULL || !X509_add_ext(x, e, -1))
		abort();
	X509_EXTENSION_free(e);
}

/* ca == NULL: a self-signed CA named cn; otherwise a leaf for DNS name cn;
   rsa: an RSA 2048 key instead of EC P-256 */
static struct testcert
testcert_make_key(const char *cn, const struct testcert *ca, bool rsa)
{
	static long serial = 1;
	struct testcert t;
	t.key = rsa ? EVP_PKEY_Q_keygen(NULL, NULL, "RSA", (size_t)2048) :
	    EVP_PKEY_Q_keygen(NULL, NULL, "EC", "P-256");
	t.cert = X509_new();
	if (t.key == NULL || t.cert == NULL)
		abort();
	X509_set_version(t.cert, 2);
	ASN1_INTEGER_set(X509_get_serialNumber(t.cert), serial++);
	X509_gmtime_adj(X509_getm_notBefore(t.cert), -3600);
	X509_gmtime_adj(X509_getm_notAfter(t.cert), 86400);
	X509_set_pubkey(t.cert, t.key);
	X509_NAME *name = X509_get_subject_name(t.cert);
	X509_NAME_add_entry_by_txt(name, "CN", MBSTRING_ASC, (const unsigned char *)cn,
	    -1, -1, 0);
	X509 *issuer = ca != NULL ? ca->cert : t.cert;
	X509_set_issuer_name(t.cert, X509_get_subject_name(issuer));
	testcert_ext(t.cert, issuer, NID_subject_key_identifier, "hash");
	if (ca == NULL) {
		testcert_ext(t.cert, issuer, NID_basic_constraints, "critical,CA:TRUE");
		testcert_ext(t.cert, issuer, NID_key_usage, "critical,keyCertSign,cRLSign");
	} else {
		char san[300];
		snprintf(san, sizeof(san), "DNS:%s", cn);
		testcert_ext(t.cert, issuer, NID_basic_constraints, "CA:FALSE");
		testcert_ext(t.cert, issuer, NID_authority_key_identifier, "keyid");
		testcert_ext(t.cert, issuer, NID_subject_alt_name, san);
		testcert_ext(t.cert, issuer, NID_ext_key_usage, "serverAuth");
	}
	if (!X509_sign(t.cert, ca != NULL ? ca->key : t.key, EVP_sha256()))
		abort();
	return t;
}

static struct testcert
testcert_make(const char *cn, const struct testcert *ca)
{
	return testcert_make_key(cn, ca, false);
}

static void
testcert_free(struct testcert *t)
{
	EVP_PKEY_free(t->key);
	X509_free(t->cert);
}

/* PEM text: the leaf, optionally its CA as chain, and the key (malloc'd) */
static char *
testcert_pem(const struct testcert *leaf, const struct testcert *chain, bool with_key,
    size_t *len_r)
{
	BIO *b = BIO_new(BIO_s_mem());
	PEM_write_bio_X509(b, leaf->cert);
	if (chain != NULL)
		PEM_write_bio_X509(b, chain->cert);
	if (with_key)
		PEM_write_bio_PrivateKey(b, leaf->key, NULL, NULL, 0, NULL, NULL);
	char *data;
	long n = BIO_get_mem_data(b, &data);
	char *out = malloc((size_t)n + 1);
	memcpy(out, data, (size_t)n);
	out[n] = '\0';
	BIO_free(b);
	*len_r = (size_t)n;
	return out;
}

#endif
