/* cpub: a C publisher for the benchmarks — `mosquitto_pub -l`, but each line names its topic.
 *
 * stdin: lines "TOPIC<TAB>PAYLOAD". Publishes every line with QoS 1 (or -q), keeping at most
 * -w messages in flight, optionally paced to -r messages/s. On exit prints one JSON line:
 * {"published": N, "acked": N, "seconds": S, "first_ns": T0}. Built by bench/pipeline.py
 * with libmosquitto; the Python publishers cannot feed a Python subscriber fast enough to
 * find its ceiling, so the load comes from C.
 *
 * With -P, prints "PUBLISHED ACKED" to stderr once a second (progress for long runs).
 *
 * usage: cpub -p PORT [-h HOST] [-q QOS] [-w WINDOW] [-r RATE] [-i CLIENT_ID] [-P]
 */
#include <mosquitto.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

static volatile long acked = 0;

static void on_publish(struct mosquitto *m, void *obj, int mid) {
    (void)m; (void)obj; (void)mid;
    acked++;
}

static long long now_ns(void) {
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    return (long long)ts.tv_sec * 1000000000LL + ts.tv_nsec;
}

int main(int argc, char **argv) {
    const char *host = "127.0.0.1", *client_id = "muckwatch-cpub";
    int port = 1883, qos = 1, window = 2000, progress = 0, opt;
    long long last_progress = 0;
    double rate = 0;
    while ((opt = getopt(argc, argv, "h:p:q:w:r:i:P")) != -1) {
        switch (opt) {
        case 'h': host = optarg; break;
        case 'p': port = atoi(optarg); break;
        case 'q': qos = atoi(optarg); break;
        case 'w': window = atoi(optarg); break;
        case 'r': rate = atof(optarg); break;
        case 'i': client_id = optarg; break;
        case 'P': progress = 1; break;
        default:
            fprintf(stderr, "usage: cpub -p PORT [-h HOST] [-q QOS] [-w WINDOW] [-r RATE]\n");
            return 2;
        }
    }
    mosquitto_lib_init();
    struct mosquitto *m = mosquitto_new(client_id, true, NULL);
    mosquitto_int_option(m, MOSQ_OPT_PROTOCOL_VERSION, MQTT_PROTOCOL_V311);
    mosquitto_max_inflight_messages_set(m, (unsigned)window);
    mosquitto_publish_callback_set(m, on_publish);
    if (mosquitto_connect(m, host, port, 60) != MOSQ_ERR_SUCCESS) {
        fprintf(stderr, "cpub: cannot connect to %s:%d\n", host, port);
        return 1;
    }
    char *line = NULL;
    size_t cap = 0;
    ssize_t len;
    long published = 0;
    long long t0 = 0;
    while ((len = getline(&line, &cap, stdin)) > 0) {
        if (line[len - 1] == '\n') line[--len] = '\0';
        char *tab = memchr(line, '\t', (size_t)len);
        if (!tab) continue;
        *tab = '\0';
        if (!t0) t0 = now_ns();
        if (rate > 0) {  /* pace: message k goes out at t0 + k / rate */
            long long due = t0 + (long long)(published / rate * 1e9);
            while (now_ns() < due) mosquitto_loop(m, 1, 1);
        }
        while (qos > 0 && published - acked >= window) mosquitto_loop(m, 10, 1);
        int rc;
        while ((rc = mosquitto_publish(m, NULL, line, (int)(len - (tab + 1 - line)), tab + 1,
                                       qos, false)) == MOSQ_ERR_OVERSIZE_PACKET ||
               rc == MOSQ_ERR_NOMEM) {
            mosquitto_loop(m, 10, 1);
        }
        if (rc != MOSQ_ERR_SUCCESS) {
            fprintf(stderr, "cpub: publish failed: %s\n", mosquitto_strerror(rc));
            return 1;
        }
        published++;
        if ((published & 63) == 0) {
            mosquitto_loop(m, 0, 1);
            if (progress) {
                long long now = now_ns();
                if (now - last_progress >= 1000000000LL) {
                    fprintf(stderr, "%ld %ld\n", published, (long)acked);
                    last_progress = now;
                }
            }
        }
    }
    while (qos > 0 && acked < published) {
        if (mosquitto_loop(m, 100, 1) != MOSQ_ERR_SUCCESS) break;
    }
    double seconds = t0 ? (now_ns() - t0) / 1e9 : 0;
    printf("{\"published\": %ld, \"acked\": %ld, \"seconds\": %.4f, \"first_ns\": %lld}\n",
           published, (long)acked, seconds, t0);
    mosquitto_disconnect(m);
    mosquitto_destroy(m);
    mosquitto_lib_cleanup();
    free(line);
    return 0;
}
