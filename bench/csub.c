/* csub: a C subscriber that only counts — the receive ceiling for the benchmarks (issue #26).
 *
 * `mosquitto_sub -F %U` formats and writes a line per message into a pipe, which costs more
 * than muckwatch's own receiver spends per message; csub subscribes at QoS 1 (libmosquitto
 * acks each message), counts, notes the first and last arrival, and exits after -C messages
 * or -t seconds without one. Prints "ready" once subscribed, then one JSON line:
 * {"received": N, "first_ns": T0, "last_ns": T1}.
 *
 * usage: csub -p PORT -C COUNT [-h HOST] [-s TOPIC] [-t IDLE_S] [-i CLIENT_ID]
 */
#include <mosquitto.h>
#include <stdio.h>
#include <stdlib.h>
#include <time.h>
#include <unistd.h>

static long received = 0;
static long long first_ns = 0, last_ns = 0;

static long long now_ns(void) {
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    return (long long)ts.tv_sec * 1000000000LL + ts.tv_nsec;
}

static void on_message(struct mosquitto *m, void *obj, const struct mosquitto_message *msg) {
    (void)m; (void)obj; (void)msg;
    last_ns = now_ns();
    if (!received) first_ns = last_ns;
    received++;
}

int main(int argc, char **argv) {
    const char *host = "127.0.0.1", *topic = "muck/v1/#", *client_id = "muckwatch-csub";
    int port = 1883, opt;
    long count = 0;
    double idle_s = 30;
    while ((opt = getopt(argc, argv, "h:p:C:s:t:i:")) != -1) {
        switch (opt) {
        case 'h': host = optarg; break;
        case 'p': port = atoi(optarg); break;
        case 'C': count = atol(optarg); break;
        case 's': topic = optarg; break;
        case 't': idle_s = atof(optarg); break;
        case 'i': client_id = optarg; break;
        default:
            fprintf(stderr, "usage: csub -p PORT -C COUNT [-h HOST] [-s TOPIC] [-t IDLE_S]\n");
            return 2;
        }
    }
    mosquitto_lib_init();
    struct mosquitto *m = mosquitto_new(client_id, true, NULL);
    mosquitto_int_option(m, MOSQ_OPT_PROTOCOL_VERSION, MQTT_PROTOCOL_V311);
    mosquitto_message_callback_set(m, on_message);
    if (mosquitto_connect(m, host, port, 60) != MOSQ_ERR_SUCCESS ||
        mosquitto_subscribe(m, NULL, topic, 1) != MOSQ_ERR_SUCCESS) {
        fprintf(stderr, "csub: cannot subscribe at %s:%d\n", host, port);
        return 1;
    }
    for (int k = 0; k < 20; k++) mosquitto_loop(m, 10, 1);  /* SUBACK before "ready" */
    printf("ready\n");
    fflush(stdout);
    long long quiet_since = now_ns();
    while (received < count) {
        long before = received;
        if (mosquitto_loop(m, 100, 1000) != MOSQ_ERR_SUCCESS) break;
        if (received != before) quiet_since = now_ns();
        else if (now_ns() - quiet_since > (long long)(idle_s * 1e9)) break;
    }
    printf("{\"received\": %ld, \"first_ns\": %lld, \"last_ns\": %lld}\n", received, first_ns,
           last_ns);
    mosquitto_disconnect(m);
    mosquitto_destroy(m);
    mosquitto_lib_cleanup();
    return 0;
}
