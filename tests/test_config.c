/* tests/test_config.c — the YAML loader: every shipped config loads, every bad file is refused
 * with the right line, column and message, overrides work, resolved output round-trips, and
 * hostile files end in an error in bounded time. */
#include "src/config.h"

#include <criterion/criterion.h>
#include <dirent.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static int has_yaml_suffix(const char *name)
{
    size_t n = strlen(name);
    return n > 5 && 0 == strcmp(name + n - 5, ".yaml");
}

Test(config, every_shipped_config_loads)
{
    DIR *dir = opendir(LOCO_SRC_DIR "/configs");
    cr_assert_not_null(dir);
    int loaded = 0;
    struct dirent *e;
    while (NULL != (e = readdir(dir))) {
        if (!has_yaml_suffix(e->d_name)) {
            continue;
        }
        char path[4096];
        snprintf(path, sizeof path, "%s/configs/%s", LOCO_SRC_DIR, e->d_name);
        loco_config cfg;
        loco_error err = {0};
        loco_status st = loco_config_load(&cfg, path, NULL, 0, &err);
        cr_expect_eq(st, LOCO_OK, "%s: %s", e->d_name, err.msg);
        loaded++;
    }
    closedir(dir);
    cr_assert_gt(loaded, 0, "no configs found");
}

/* Each bad file's first line is "# expect: LINE:COL: message prefix". */
Test(config, bad_files_are_refused_with_line_column_and_reason)
{
    DIR *dir = opendir(LOCO_SRC_DIR "/tests/configs/bad");
    cr_assert_not_null(dir);
    int checked = 0;
    struct dirent *e;
    while (NULL != (e = readdir(dir))) {
        if (!has_yaml_suffix(e->d_name)) {
            continue;
        }
        char path[4096];
        snprintf(path, sizeof path, "%s/tests/configs/bad/%s", LOCO_SRC_DIR, e->d_name);
        FILE *fp = fopen(path, "r");
        cr_assert_not_null(fp);
        char first[512] = "";
        cr_assert_not_null(fgets(first, sizeof first, fp));
        fclose(fp);
        first[strcspn(first, "\n")] = '\0';
        cr_assert(0 == strncmp(first, "# expect: ", 10), "%s lacks an expect line", e->d_name);
        char want[5000];
        snprintf(want, sizeof want, "%s:%s", path, first + 10);
        loco_config cfg;
        loco_error err = {0};
        loco_status st = loco_config_load(&cfg, path, NULL, 0, &err);
        cr_expect_eq(st, LOCO_ERR_CONFIG, "%s was accepted", e->d_name);
        cr_expect(0 == strncmp(err.msg, want, strlen(want)), "%s:\n  got  %s\n  want %s...",
                  e->d_name, err.msg, want);
        checked++;
    }
    closedir(dir);
    cr_assert_geq(checked, 15);
}

Test(config, overrides_set_any_key_and_are_validated)
{
    const char *text = "model:\n  n_layer: 2\n";
    const char *sets[] = {"model.n_layer=6", "optim.kind=sgd", "train.steps=7",
                          "run.dir=/tmp/x y", "optim.nesterov=false", "optim.lr=0.5"};
    loco_config cfg;
    loco_error err = {0};
    cr_assert_eq(loco_config_load_string(&cfg, "t.yaml", text, strlen(text), sets, 6, &err),
                 LOCO_OK, "%s", err.msg);
    cr_assert_eq(cfg.model.n_layer, 6);
    cr_assert_eq(cfg.optim.kind, LOCO_OPTIM_SGD);
    cr_assert_eq(cfg.train.steps, 7);
    cr_assert_str_eq(cfg.run.dir, "/tmp/x y");
    cr_assert_eq(cfg.optim.nesterov, false);
    cr_assert_float_eq(cfg.optim.lr, 0.5f, 0);

    const char *kv[] = {"model.n_layer=4", "model.kv_src=[0,0,2,2]"};
    cr_assert_eq(loco_config_load_string(&cfg, "t.yaml", text, strlen(text), kv, 2, &err),
                 LOCO_OK, "%s", err.msg);
    cr_assert_eq(cfg.model.kv_src[1], 0);
    cr_assert_eq(cfg.model.kv_src[3], 2);

    struct {
        const char *set, *want;
    } bad[] = {
        {"model.n_layers=3", "--set: unknown key 'model.n_layers'; allowed in model: n_layer"},
        {"n_layer", "--set: 'n_layer' is not of the form section.key=value"},
        {"model.n_head=0", "--set model.n_head: model.n_head: 0 is out of range"},
        {"model.n_kv_head=3", "--set model.n_kv_head: n_kv_head 3 does not divide n_head 4"},
        {"data.partition=random", "--set data.partition: data.partition: unknown value 'random'"},
    };
    for (size_t i = 0; i < sizeof bad / sizeof *bad; i++) {
        loco_error e2 = {0};
        const char *one[] = {bad[i].set};
        cr_expect_eq(loco_config_load_string(&cfg, "t.yaml", text, strlen(text), one, 1, &e2),
                     LOCO_ERR_CONFIG, "accepted %s", bad[i].set);
        cr_expect(0 == strncmp(e2.msg, bad[i].want, strlen(bad[i].want)), "got '%s' want '%s'",
                  e2.msg, bad[i].want);
    }
}

Test(config, resolved_yaml_round_trips)
{
    const char *sets[] = {"model.n_layer=4", "model.kv_src=0,0,2,2", "model.n_kv_head=2",
                          "run.dir=runs/\"odd\" name", "optim.lr=0.00123", "run.seed=18446744073709551615"};
    loco_config a, b;
    loco_error err = {0};
    cr_assert_eq(loco_config_load_string(&a, "x.yaml", "", 0, sets, 6, &err), LOCO_OK, "%s",
                 err.msg);
    char *text = NULL;
    size_t len = 0;
    FILE *mem = open_memstream(&text, &len);
    loco_config_write_yaml(&a, mem);
    fclose(mem);
    cr_assert_eq(loco_config_load_string(&b, "resolved.yaml", text, len, NULL, 0, &err), LOCO_OK,
                 "%s\n%s", err.msg, text);
    cr_assert_eq(memcmp(&a.run, &b.run, sizeof a.run), 0);
    cr_assert_eq(memcmp(&a.model, &b.model, sizeof a.model), 0);
    cr_assert_eq(memcmp(&a.data, &b.data, sizeof a.data), 0);
    cr_assert_eq(memcmp(&a.train, &b.train, sizeof a.train), 0);
    cr_assert_eq(memcmp(&a.optim, &b.optim, sizeof a.optim), 0);
    free(text);
}

Test(config, missing_file_is_a_config_error_naming_it)
{
    loco_config cfg;
    loco_error err = {0};
    cr_assert_eq(loco_config_load(&cfg, "/nonexistent/x.yaml", NULL, 0, &err), LOCO_ERR_CONFIG);
    cr_assert(strstr(err.msg, "/nonexistent/x.yaml") != NULL);
}

static loco_status load_text(const char *text, size_t len, loco_error *err)
{
    loco_config cfg;
    return loco_config_load_string(&cfg, "hostile.yaml", text, len, NULL, 0, err);
}

Test(config, hostile_files_fail_in_bounded_time_and_memory, .timeout = 20)
{
    loco_error err = {0};
    /* deep nesting */
    size_t n = 200000;
    char *deep = malloc(2 * n + 1);
    memset(deep, '[', n);
    memset(deep + n, ']', n);
    deep[2 * n] = '\0';
    cr_assert_eq(load_text(deep, 2 * n, &err), LOCO_ERR_CONFIG);
    cr_assert(strstr(err.msg, "nesting deeper") != NULL, "%s", err.msg);
    free(deep);
    /* billion laughs: refused at the first alias */
    const char *laughs = "a: &a [\"lol\",\"lol\",\"lol\",\"lol\",\"lol\",\"lol\",\"lol\",\"lol\"]\n"
                         "b: &b [*a,*a,*a,*a,*a,*a,*a,*a,*a]\n"
                         "c: &c [*b,*b,*b,*b,*b,*b,*b,*b,*b]\n"
                         "d: &d [*c,*c,*c,*c,*c,*c,*c,*c,*c]\n";
    loco_error_clear(&err);
    cr_assert_eq(load_text(laughs, strlen(laughs), &err), LOCO_ERR_CONFIG);
    cr_assert(strstr(err.msg, "anchors") != NULL || strstr(err.msg, "aliases") != NULL, "%s",
              err.msg);
    /* huge scalar */
    size_t big = 100000;
    char *huge = malloc(big + 32);
    strcpy(huge, "run:\n  dir: ");
    memset(huge + strlen(huge), 'x', big);
    huge[12 + big] = '\0';
    loco_error_clear(&err);
    cr_assert_eq(load_text(huge, strlen(huge), &err), LOCO_ERR_CONFIG);
    cr_assert(strstr(err.msg, "scalar of") != NULL, "%s", err.msg);
    free(huge);
    /* binary junk, many seeds: always an error, never a crash */
    loco_rng rng;
    loco_rng_init(&rng, 5, 0);
    char junk[4096];
    for (int trial = 0; trial < 300; trial++) {
        size_t len = 1 + loco_rng_below(&rng, sizeof junk - 1);
        for (size_t i = 0; i < len; i++) {
            junk[i] = (char)loco_rng_u32(&rng);
        }
        loco_error_clear(&err);
        cr_assert_neq(load_text(junk, len, &err), LOCO_OK, "junk accepted");
        cr_assert(strlen(err.msg) > 0);
    }
    /* many nodes */
    size_t items = 50000;
    char *wide = malloc(items * 3 + 16);
    char *p = wide;
    p += sprintf(p, "x: [");
    for (size_t i = 0; i < items; i++) {
        p += sprintf(p, "1,");
    }
    sprintf(p, "1]");
    loco_error_clear(&err);
    cr_assert_eq(load_text(wide, strlen(wide), &err), LOCO_ERR_CONFIG);
    free(wide);
}

Test(config, file_larger_than_limit_is_refused)
{
    char path[] = "/tmp/loco_cfg_XXXXXX";
    int fd = mkstemp(path);
    cr_assert_geq(fd, 0);
    FILE *fp = fdopen(fd, "w");
    for (int i = 0; i < (2 << 20) / 16; i++) {
        fputs("# padding ......\n", fp);
    }
    fclose(fp);
    loco_config cfg;
    loco_error err = {0};
    cr_assert_eq(loco_config_load(&cfg, path, NULL, 0, &err), LOCO_ERR_CONFIG);
    cr_assert(strstr(err.msg, "bytes") != NULL, "%s", err.msg);
    remove(path);
}

Test(config, transport_section_with_units_lists_and_round_trip)
{
    const char *text = "transport:\n"
                       "  streams: 8\n"
                       "  chunk: 2MiB\n"
                       "  listen: 127.0.0.1:5555\n"
                       "  op_timeout: 30s\n"
                       "  link:\n"
                       "    rate: 100mbit\n"
                       "    delay: 40ms\n"
                       "    jitter: 2ms\n"
                       "    loss: 0.1%\n"
                       "    outages: [\"10s+2s\", \"30s+500ms\"]\n"
                       "  links: [\"0->1 rate=10mbit,delay=100ms\"]\n";
    loco_config a, b;
    loco_error err = {0};
    cr_assert_eq(loco_config_load_string(&a, "t.yaml", text, strlen(text), NULL, 0, &err),
                 LOCO_OK, "%s", err.msg);
    const loco_comm_config *c = &a.transport.comm;
    cr_assert_eq(c->streams, 8);
    cr_assert_eq(c->chunk_bytes, 2u << 20);
    cr_assert_str_eq(c->listen_host, "127.0.0.1");
    cr_assert_eq(c->listen_port, 5555);
    cr_assert_float_eq(c->op_timeout_s, 30.0, 1e-9);
    cr_assert_float_eq(c->link.rate_bps, 1e8, 1);
    cr_assert_float_eq(c->link.delay_s, 0.040, 1e-9);
    cr_assert_float_eq(c->link.loss, 0.001, 1e-12);
    cr_assert_eq(c->link.n_outages, 2);
    cr_assert_float_eq(c->link.outages[1].start_s, 30.0, 1e-9);
    cr_assert_float_eq(c->link.outages[1].duration_s, 0.5, 1e-9);
    cr_assert_eq(c->n_link_rules, 1);
    cr_assert_eq(c->link_rules, a.transport.link_rules);
    cr_assert_eq(c->link_rules[0].from, 0);
    cr_assert_eq(c->link_rules[0].to, 1);
    cr_assert_float_eq(c->link_rules[0].link.rate_bps, 1e7, 1);
    cr_assert_float_eq(c->link_rules[0].link.delay_s, 0.1, 1e-9);
    cr_assert_float_eq(c->link_rules[0].link.jitter_s, 0.002, 1e-9); /* inherited */
    char *out = NULL;
    size_t len = 0;
    FILE *mem = open_memstream(&out, &len);
    loco_config_write_yaml(&a, mem);
    fclose(mem);
    cr_assert_eq(loco_config_load_string(&b, "resolved.yaml", out, len, NULL, 0, &err), LOCO_OK,
                 "%s\n%s", err.msg, out);
    cr_assert_eq(b.transport.comm.link.n_outages, 2);
    cr_assert_float_eq(b.transport.comm.link.rate_bps, 1e8, 1);
    cr_assert_float_eq(b.transport.comm.link_rules[0].link.rate_bps, 1e7, 1);
    cr_assert_eq(b.transport.comm.chunk_bytes, 2u << 20);
    free(out);

    struct {
        const char *set, *want;
    } bad[] = {
        {"transport.link.rate=fast", "--set transport.link.rate: transport.link.rate:"},
        {"transport.link.outages=10s", "--set transport.link.outages: transport.link.outages:"},
        {"transport.links=0-1 rate=1gbit", "--set transport.links: transport.links: link rule"},
        {"transport.streams=0", "--set transport.streams: transport.streams: 0 is out of range"},
        {"transport.listen=host:99999", "transport.listen: 'host:99999' has a bad port"},
        {"transport.launch=join", "transport.launch is join but transport.join is empty"},
    };
    for (size_t i = 0; i < sizeof bad / sizeof *bad; i++) {
        loco_error e2 = {0};
        const char *one[] = {bad[i].set};
        cr_expect_eq(loco_config_load_string(&a, "t.yaml", "", 0, one, 1, &e2), LOCO_ERR_CONFIG,
                     "accepted %s", bad[i].set);
        cr_expect(0 == strncmp(e2.msg, bad[i].want, strlen(bad[i].want)), "got '%s' want '%s'",
                  e2.msg, bad[i].want);
    }
    /* ';' separates list items on the command line */
    const char *two[] = {"transport.link.outages=1s+1s;5s+2s"};
    cr_assert_eq(loco_config_load_string(&a, "t.yaml", "", 0, two, 1, &err), LOCO_OK, "%s",
                 err.msg);
    cr_assert_eq(a.transport.comm.link.n_outages, 2);
}

Test(config, sync_and_codec_sections_resolve_against_the_codec_defaults)
{
    static const char text[] = "train:\n  steps: 300\nrun:\n  seed: 9\n"
                               "sync:\n  strategy: diloco\n  h: 25\n  delay: 1\n"
                               "codec:\n  name: maxmin\n  bits: 8\n  rng: ars\n";
    loco_config cfg;
    loco_error err = {0};
    cr_assert_eq(LOCO_OK, loco_config_load_string(&cfg, "t.yaml", text, sizeof text - 1, NULL, 0,
                                                   &err),
                 "%s", err.msg);
    cr_assert_eq(cfg.sync.strategy, LOCO_SYNC_DILOCO);
    cr_assert_eq(cfg.sync.h, 25);
    cr_assert_eq(cfg.sync.delay, 1);
    cr_assert(cfg.sync.compress);
    cr_assert_eq(cfg.sync.codec.id, LOCO_CODEC_MAXMIN);
    cr_assert_eq(cfg.sync.codec.bits, 8);       /* given */
    cr_assert_eq(cfg.sync.codec.bucket, 512);   /* the codec's default */
    cr_assert_eq(cfg.sync.codec.rng, LOCO_CODEC_RNG_ARS);
    cr_assert_eq(cfg.sync.total_steps, 300);    /* rounds end with the run */
    cr_assert_eq(cfg.sync.seed, 9);
    cr_assert(fabsf(cfg.sync.outer_lr - 0.7f) < 1e-7f && cfg.sync.outer_nesterov);
    /* auto codec: the strategy's default; sign keeps its own bucket default 0 */
    static const char streaming[] = "sync:\n  strategy: streaming\n  h: 10\n";
    cr_assert_eq(LOCO_OK, loco_config_load_string(&cfg, "s.yaml", streaming,
                                                   sizeof streaming - 1, NULL, 0, &err));
    cr_assert_eq(cfg.sync.codec.id, LOCO_CODEC_FP4);
    cr_assert_eq(cfg.sync.codec.rng, LOCO_CODEC_RNG_PHILOX); /* the default */
    const char *aes[] = {"codec.rng=aes"};
    cr_assert_eq(LOCO_ERR_CONFIG, loco_config_load_string(&cfg, "s.yaml", "", 0, aes, 1, &err));
    cr_assert(NULL != strstr(err.msg, "codec.rng") && NULL != strstr(err.msg, "philox, ars"),
              "%s", err.msg);
    err = (loco_error){0};
    const char *sign[] = {"sync.strategy=ddp", "codec.name=sign", "codec.ef=ef", "codec.rng=ars"};
    cr_assert_eq(LOCO_OK, loco_config_load_string(&cfg, "s.yaml", "", 0, sign, 4, &err), "%s",
                 err.msg);
    cr_assert_eq(cfg.sync.codec.id, LOCO_CODEC_SIGN);
    cr_assert_eq(cfg.sync.codec.bucket, 0);
    cr_assert_eq(cfg.sync.ef.mode, LOCO_EF_EF);
    /* the resolved file loads back to the same settings */
    char *out = NULL;
    size_t len = 0;
    FILE *mem = open_memstream(&out, &len);
    loco_config_write_yaml(&cfg, mem);
    fclose(mem);
    loco_config again;
    cr_assert_eq(LOCO_OK, loco_config_load_string(&again, "again.yaml", out, len, NULL, 0, &err),
                 "%s", err.msg);
    free(out);
    cr_assert_eq(again.sync.strategy, cfg.sync.strategy);
    cr_assert_eq(again.sync.codec.id, cfg.sync.codec.id);
    cr_assert_eq(again.sync.codec.bucket, cfg.sync.codec.bucket);
    cr_assert_eq(again.sync.codec.bits, cfg.sync.codec.bits);
    cr_assert_eq(again.sync.codec.density, cfg.sync.codec.density);
    cr_assert_eq(again.sync.codec.rng, LOCO_CODEC_RNG_ARS);
    cr_assert_eq(again.sync.ef.mode, cfg.sync.ef.mode);
    cr_assert_eq(again.sync.compress, cfg.sync.compress);
    cr_assert_eq(again.sync.h, cfg.sync.h);
    /* an override naming the key in the error */
    const char *bad[] = {"sync.strategy=streaming", "sync.h=10", "sync.overlap=7"};
    cr_assert_eq(LOCO_ERR_CONFIG, loco_config_load_string(&cfg, "s.yaml", "", 0, bad, 3, &err));
    cr_assert(0 == strncmp(err.msg, "--set sync.overlap: sync.overlap = 7", 36), "%s", err.msg);
}

Test(config, ft_and_authentication_keys_with_round_trip_and_errors)
{
    const char *text = "transport:\n"
                       "  key_file: /etc/loco/run.key\n"
                       "  integrity: true\n"
                       "ft:\n"
                       "  coordinator: external\n"
                       "  coordinator_addr: 10.0.0.9:29500\n"
                       "  op_deadline: 45s\n"
                       "  adaptive_deadline: true\n"
                       "  deadline_k: 4.5\n"
                       "  deadline_min: 2s\n"
                       "  straggler: wait\n"
                       "  straggler_wait: 2m\n"
                       "  transfer_streams: 8\n"
                       "  parity: false\n";
    loco_config a, b;
    loco_error err = {0};
    cr_assert_eq(loco_config_load_string(&a, "t.yaml", text, strlen(text), NULL, 0, &err),
                 LOCO_OK, "%s", err.msg);
    const loco_comm_config *c = &a.transport.comm;
    cr_assert_str_eq(c->key_file, "/etc/loco/run.key");
    cr_assert(c->integrity);
    cr_assert_eq(c->ft.coordinator, LOCO_COORD_EXTERNAL);
    cr_assert_str_eq(c->ft.coordinator_addr, "10.0.0.9:29500");
    cr_assert_float_eq(c->ft.op_deadline_s, 45.0, 1e-9);
    cr_assert(c->ft.adaptive_deadline);
    cr_assert_float_eq(c->ft.deadline_k, 4.5, 1e-9);
    cr_assert_float_eq(c->ft.deadline_min_s, 2.0, 1e-9);
    cr_assert_eq(c->ft.straggler, LOCO_STRAGGLER_WAIT);
    cr_assert_float_eq(c->ft.straggler_wait_s, 120.0, 1e-9);
    cr_assert_eq(c->ft.transfer_streams, 8);
    cr_assert(!c->ft.parity);
    char *out = NULL;
    size_t len = 0;
    FILE *mem = open_memstream(&out, &len);
    loco_config_write_yaml(&a, mem);
    fclose(mem);
    cr_assert_eq(loco_config_load_string(&b, "resolved.yaml", out, len, NULL, 0, &err), LOCO_OK,
                 "%s\n%s", err.msg, out);
    cr_assert_eq(0, memcmp(&a.transport.comm.ft, &b.transport.comm.ft, sizeof a.transport.comm.ft));
    free(out);
    loco_config d;
    loco_config_defaults(&d);
    cr_assert_eq(d.transport.comm.ft.coordinator, LOCO_COORD_RANK0); /* on by default */
    cr_assert(d.transport.comm.ft.parity);
    struct {
        const char *set, *want;
    } bad[] = {
        {"ft.coordinator=elsewhere", "--set ft.coordinator: ft.coordinator:"},
        {"ft.coordinator=external", "ft.coordinator is external but ft.coordinator_addr is empty"},
        {"ft.straggler=maybe", "--set ft.straggler: ft.straggler:"},
        {"ft.op_deadline=soon", "--set ft.op_deadline: ft.op_deadline:"},
    };
    for (size_t i = 0; i < sizeof bad / sizeof *bad; i++) {
        loco_error e2 = {0};
        const char *one[] = {bad[i].set};
        cr_expect_eq(loco_config_load_string(&a, "t.yaml", "", 0, one, 1, &e2), LOCO_ERR_CONFIG,
                     "accepted %s", bad[i].set);
        cr_expect(0 == strncmp(e2.msg, bad[i].want, strlen(bad[i].want)), "got '%s' want '%s'",
                  e2.msg, bad[i].want);
    }
}
