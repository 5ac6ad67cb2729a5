/* Unit tests for common/: the error table, durations, buffers, hashing, constant-time compare. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <string.h>

#include <cmocka.h>

#include "gate.h"

static void test_error_table_codes_are_unique_and_mapped(void **state)
{
    (void)state;
    for (int i = 0; i < GATE_E__COUNT; i++) {
        const char *code = gate_code_str((enum gate_code)i);
        assert_non_null(code);
        assert_true(strlen(code) > 1);
        assert_true(strlen(gate_code_message((enum gate_code)i)) > 1);
        int st = gate_code_http((enum gate_code)i);
        assert_true(st >= 200 && st < 600);
        for (int j = i + 1; j < GATE_E__COUNT; j++)
            assert_string_not_equal(code, gate_code_str((enum gate_code)j));
    }
}

static void test_error_table_statuses(void **state)
{
    (void)state;
    static const struct {
        enum gate_code code;
        const char *str;
        int status;
    } rows[] = {
        {GATE_E_MALFORMED_JSON, "malformed_json", 400},
        {GATE_E_DUPLICATE_KEY, "duplicate_key", 400},
        {GATE_E_JSON_TOO_DEEP, "json_too_deep", 400},
        {GATE_E_BAD_REQUEST, "bad_request", 400},
        {GATE_E_UNAUTHORIZED, "unauthorized", 401},
        {GATE_E_DECISION_MISMATCH, "decision_mismatch", 403},
        {GATE_E_TOOL_NOT_FOUND, "tool_not_found", 404},
        {GATE_E_METHOD_NOT_ALLOWED, "method_not_allowed", 405},
        {GATE_E_ALREADY_DECIDED, "already_decided", 409},
        {GATE_E_APPROVAL_EXPIRED, "approval_expired", 410},
        {GATE_E_BODY_TOO_LARGE, "body_too_large", 413},
        {GATE_E_UNSUPPORTED_MEDIA_TYPE, "unsupported_media_type", 415},
        {GATE_E_INVALID_ARGUMENTS, "invalid_arguments", 422},
        {GATE_E_TOO_MANY_CALLS, "too_many_calls", 429},
        {GATE_E_AUDIT_UNAVAILABLE, "audit_unavailable", 503},
    };
    for (size_t i = 0; i < sizeof(rows) / sizeof(rows[0]); i++) {
        assert_string_equal(gate_code_str(rows[i].code), rows[i].str);
        assert_int_equal(gate_code_http(rows[i].code), rows[i].status);
    }
    assert_string_equal(gate_code_str((enum gate_code)9999), "internal_error");
    assert_int_equal(gate_code_http((enum gate_code)9999), 500);
}

static void test_error_wrap_adds_context(void **state)
{
    (void)state;
    struct gate_error err;
    assert_int_equal(gate_err(&err, GATE_E_POLICY, "line %d: unknown key '%s'", 12, "isolaton"),
                     -1);
    assert_int_equal(gate_err_wrap(&err, "load %s", "policies/sql.yaml"), -1);
    assert_string_equal(err.msg, "load policies/sql.yaml: line 12: unknown key 'isolaton'");
    assert_int_equal(err.code, GATE_E_POLICY);
    assert_int_equal(gate_err(NULL, GATE_E_IO, "no target"), -1);
}

static void test_durations(void **state)
{
    (void)state;
    static const struct {
        const char *in;
        int rc;
        uint64_t ms;
    } rows[] = {
        {"250ms", 0, 250},
        {"5s", 0, 5000},
        {"2m", 0, 120000},
        {"1h", 0, 3600000},
        {"7d", 0, 604800000},
        {"7", 0, 7000},
        {"", -1, 0},
        {"5x", -1, 0},
        {"-1s", -1, 0},
        {"s", -1, 0},
        {"99999999999999999999s", -1, 0},
    };
    for (size_t i = 0; i < sizeof(rows) / sizeof(rows[0]); i++) {
        uint64_t ms = 0;
        assert_int_equal(gate_parse_duration_ms(rows[i].in, &ms), rows[i].rc);
        if (rows[i].rc == 0) assert_int_equal(ms, rows[i].ms);
    }
}

static void test_buffer_grows_and_terminates(void **state)
{
    (void)state;
    struct gate_buf b = {0};
    for (int i = 0; i < 1000; i++)
        assert_int_equal(gate_buf_printf(&b, "%04d", i), 0);
    assert_int_equal(b.len, 4000);
    assert_int_equal(b.data[b.len], '\0');
    assert_memory_equal(b.data + 3996, "0999", 4);
    gate_buf_free(&b);
    assert_null(b.data);
}

static void test_sha256_known_vector(void **state)
{
    (void)state;
    char hex[65];
    gate_sha256_hex("abc", 3, hex);
    assert_string_equal(hex, "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad");
}

static void test_consttime_eq(void **state)
{
    (void)state;
    assert_true(gate_consttime_eq("token", 5, "token", 5));
    assert_false(gate_consttime_eq("token", 5, "tokeN", 5));
    assert_false(gate_consttime_eq("token", 5, "token2", 6));
}

static void test_call_ids_are_unique(void **state)
{
    (void)state;
    char a[40], b[40];
    gate_new_call_id(a);
    gate_new_call_id(b);
    assert_int_equal(strlen(a), 34);
    assert_memory_equal(a, "c_", 2);
    assert_string_not_equal(a, b);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_error_table_codes_are_unique_and_mapped),
        cmocka_unit_test(test_error_table_statuses),
        cmocka_unit_test(test_error_wrap_adds_context),
        cmocka_unit_test(test_durations),
        cmocka_unit_test(test_buffer_grows_and_terminates),
        cmocka_unit_test(test_sha256_known_vector),
        cmocka_unit_test(test_consttime_eq),
        cmocka_unit_test(test_call_ids_are_unique),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
