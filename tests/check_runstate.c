/* SPDX-License-Identifier: MIT */
/* The one mapping from a run's outcome to the exit code (host/runstate.c). */
#include "autoconfig.h"

#include <check.h>
#include <signal.h>
#include <stdlib.h>

#include <connhost/plugin.h>

#include "runstate.h"

/* Instances ok/failed, then what happened to the run itself. */
static const struct {
  size_t nok, nfail;
  int aborted, degraded, signal;
  int exit;
  const char *word;
} cases[] = {
    {2, 0, CH_OK, CH_OK, 0, EXIT_OK, "ok"},
    {0, 0, CH_OK, CH_OK, 0, EXIT_OK, "ok"},
    {1, 1, CH_OK, CH_OK, 0, EXIT_PARTIAL, "partial"},
    {0, 2, CH_OK, CH_OK, 0, EXIT_FAIL, "failed"},
    /* the store failed after the output was written */
    {2, 0, CH_OK, CH_E_IO, 0, EXIT_FAIL, "failed"},
    {1, 1, CH_OK, CH_E_IO, 0, EXIT_PARTIAL, "partial"},
    /* the run stopped on its own: usage, out of memory, a write error */
    {0, 0, CH_E_CONFIG, CH_OK, 0, EXIT_USAGE, "failed"},
    {1, 1, CH_E_NOMEM, CH_OK, 0, EXIT_FAIL, "failed"},
    {2, 0, CH_E_IO, CH_OK, 0, EXIT_FAIL, "failed"},
    /* a signal wins over everything */
    {1, 1, CH_E_IO, CH_OK, SIGINT, 130, "failed"},
    {2, 0, CH_OK, CH_OK, SIGTERM, 143, "failed"},
};

START_TEST(test_exit_code) {
  struct run_state r = {0};

  for (size_t i = 0; i < cases[_i].nok; i++)
    run_count(&r, 1);
  for (size_t i = 0; i < cases[_i].nfail; i++)
    run_count(&r, 0);
  if (cases[_i].aborted) {
    run_abort(&r, cases[_i].aborted);
    /* a second reason does not replace the first */
    run_abort(&r, cases[_i].aborted == CH_E_CONFIG ? CH_E_NOMEM : CH_E_CONFIG);
  }
  if (cases[_i].degraded)
    run_degrade(&r, cases[_i].degraded);
  if (cases[_i].signal)
    run_stopped(&r, cases[_i].signal);
  ck_assert_int_eq(run_exit_code(&r), cases[_i].exit);
  ck_assert_str_eq(run_word(&r), cases[_i].word);
}
END_TEST

START_TEST(test_merge) {
  struct run_state total = {0}, ok = {.nok = 2},
                   partial = {.nok = 1, .nfail = 1},
                   stopped = {.nok = 1, .signal = SIGTERM};

  run_merge(&total, &ok);
  ck_assert_int_eq(run_exit_code(&total), EXIT_OK);
  run_merge(&total, &partial);
  ck_assert_int_eq(run_exit_code(&total), EXIT_PARTIAL);
  run_merge(&total, &stopped);
  ck_assert_int_eq(run_exit_code(&total), 143);
}
END_TEST

START_TEST(test_single_op) {
  ck_assert_int_eq(run_exit_of(CH_OK), EXIT_OK);
  ck_assert_int_eq(run_exit_of(CH_E_CONFIG), EXIT_FAIL);
  ck_assert_int_eq(run_exit_of(CH_E_NOTFOUND), EXIT_FAIL);
}
END_TEST

static Suite *runstate_suite(void) {
  Suite *s = suite_create("runstate");
  TCase *tc = tcase_create("exit");

  tcase_add_loop_test(tc, test_exit_code, 0, sizeof(cases) / sizeof(cases[0]));
  tcase_add_test(tc, test_merge);
  tcase_add_test(tc, test_single_op);
  suite_add_tcase(s, tc);
  return s;
}

int main(void) {
  SRunner *sr = srunner_create(runstate_suite());
  int failed;

  srunner_run_all(sr, CK_NORMAL);
  failed = srunner_ntests_failed(sr);
  srunner_free(sr);
  return failed ? EXIT_FAILURE : EXIT_SUCCESS;
}
