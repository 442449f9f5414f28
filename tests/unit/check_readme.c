/*
 * README.md's "## Configuration reference" documents exactly the keys the loader
 * knows: every known key is documented, and nothing documented is unknown. A key is
 * documented by a table row whose first cell is the key path in backticks
 * ("| `instances.*.timeouts.command` | ..."). Tests run from the repository root.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common/config.h"
#include "tests/unit/testmain.h"

struct keys {
	char **v;
	size_t n;
};

static void
keys_add(struct keys *k, const char *s, size_t len)
{
	k->v = realloc(k->v, (k->n + 1) * sizeof(*k->v));
	ck_assert_ptr_nonnull(k->v);
	k->v[k->n] = strndup(s, len);
	ck_assert_ptr_nonnull(k->v[k->n]);
	k->n++;
}

static bool
keys_has(const struct keys *k, const char *s)
{
	for (size_t i = 0; i < k->n; i++)
		if (strcmp(k->v[i], s) == 0)
			return true;
	return false;
}

static void
keys_free(struct keys *k)
{
	for (size_t i = 0; i < k->n; i++)
		free(k->v[i]);
	free(k->v);
}

/* the first-cell keys of the tables in the section; -1 when there is no section */
static int
readme_keys(FILE *fp, struct keys *k)
{
	char *line = NULL;
	size_t cap = 0;
	bool in = false, found = false;

	while (getline(&line, &cap, fp) != -1) {
		if (strncmp(line, "## ", 3) == 0) {
			in = strncmp(line, "## Configuration reference", 26) == 0;
			found |= in;
			continue;
		}
		if (!in || strncmp(line, "| `", 3) != 0)
			continue;
		const char *start = line + 3, *end = strchr(start, '`');
		ck_assert_msg(end != NULL && strncmp(end, "` |", 3) == 0,
		    "malformed key cell: %s", line);
		keys_add(k, start, (size_t)(end - start));
	}
	free(line);
	return found ? 0 : -1;
}

START_TEST(test_readme_keys)
{
	FILE *fp = fopen("README.md", "r");
	struct keys doc = { NULL, 0 }, known = { NULL, 0 };
	const char *const *kk = config_known_keys();
	size_t missing = 0, unknown = 0;

	ck_assert_msg(fp != NULL, "README.md not found (run from the repository root)");
	ck_assert_int_eq(readme_keys(fp, &doc), 0);
	fclose(fp);

	for (size_t i = 0; kk[i] != NULL; i++)
		keys_add(&known, kk[i], strlen(kk[i]));
	for (size_t i = 0; i < known.n; i++) {
		if (!keys_has(&doc, known.v[i])) {
			fprintf(stderr, "README.md: key not documented: %s\n", known.v[i]);
			missing++;
		}
	}
	for (size_t i = 0; i < doc.n; i++) {
		if (!keys_has(&known, doc.v[i])) {
			fprintf(stderr, "README.md: documented key unknown to the loader: %s\n",
			    doc.v[i]);
			unknown++;
		}
		for (size_t j = 0; j < i; j++)
			ck_assert_msg(strcmp(doc.v[i], doc.v[j]) != 0,
			    "README.md documents %s twice", doc.v[i]);
	}
	ck_assert_msg(missing == 0 && unknown == 0, "%zu undocumented, %zu unknown",
	    missing, unknown);
	ck_assert_uint_eq(doc.n, known.n);
	keys_free(&doc);
	keys_free(&known);
}
END_TEST

/* the parser itself: it must see keys only inside the section, and find errors */
static const struct {
	const char *text;
	int ret;
	size_t n;
	const char *first;
} parse_cases[] = {
	{ "# x\n| `a.b` | t |\n", -1, 0, NULL },
	{ "## Configuration reference\n| Key | T |\n|---|---|\n| `server.hostname` | s |\n"
	  "## Other\n| `not.this` | x |\n", 0, 1, "server.hostname" },
	{ "## Intro\n| `x` | y |\n## Configuration reference\n### server\n"
	  "| `lan` | l |\n| `instances.*.backoff.max` | d |\n", 0, 2, "lan" },
};

START_TEST(test_readme_parser)
{
	FILE *fp = fmemopen((void *)parse_cases[_i].text, strlen(parse_cases[_i].text),
	    "r");
	struct keys k = { NULL, 0 };

	ck_assert_ptr_nonnull(fp);
	ck_assert_int_eq(readme_keys(fp, &k), parse_cases[_i].ret);
	fclose(fp);
	ck_assert_uint_eq(k.n, parse_cases[_i].n);
	if (parse_cases[_i].first != NULL)
		ck_assert_str_eq(k.v[0], parse_cases[_i].first);
	keys_free(&k);
}
END_TEST

static Suite *
readme_suite(void)
{
	Suite *s = suite_create("readme");
	TCase *tc = tcase_create("readme");

	tcase_add_test(tc, test_readme_keys);
	tcase_add_loop_test(tc, test_readme_parser, 0,
	    (int)(sizeof(parse_cases) / sizeof(parse_cases[0])));
	suite_add_tcase(s, tc);
	return s;
}

CHECK_MAIN(readme_suite)
