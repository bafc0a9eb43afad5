package edupulse.bench.debezium;

import io.debezium.DebeziumException;
import io.debezium.engine.ChangeEvent;
import io.debezium.engine.DebeziumEngine;
import io.debezium.engine.format.Json;
import io.debezium.engine.format.KeyValueHeaderChangeEventFormat;
import io.debezium.engine.format.SimpleString;
import java.nio.charset.StandardCharsets;
import java.time.Duration;
import java.util.ArrayList;
import java.util.HashMap;
import java.util.List;
import java.util.Map;
import java.util.Properties;
import java.util.concurrent.CountDownLatch;
import java.util.concurrent.ExecutionException;
import java.util.concurrent.ExecutorService;
import java.util.concurrent.Executors;
import java.util.concurrent.Future;
import java.util.concurrent.TimeUnit;
import java.util.concurrent.TimeoutException;
import java.util.concurrent.atomic.AtomicBoolean;
import java.util.concurrent.atomic.AtomicReference;
import org.apache.kafka.clients.producer.KafkaProducer;
import org.apache.kafka.clients.producer.ProducerRecord;
import org.apache.kafka.clients.producer.RecordMetadata;
import org.apache.kafka.common.header.internals.RecordHeaders;
import org.apache.kafka.common.serialization.StringSerializer;

/**
 * Debezium as an outbox relay, the way Debezium Server's Kafka sink runs it: an embedded
 * engine (PostgreSQL connector, pgoutput) captures the inserts into an outbox table of
 * Debezium's shape, the outbox event router turns each into a message (key = aggregateid,
 * value = payload, header id = the event's id), and a Kafka producer (idempotent,
 * acks=all) sends every batch and waits for all of it before the engine may commit the
 * batch's offsets, which confirms its LSN to PostgreSQL.
 *
 * <p>Arguments are {@code name=value} pairs that say where things are (see {@link #REQUIRED});
 * every setting of Debezium and of the producer is fixed here, each with its reason, and
 * listed in bench/README.md. Prints {@code ready} on stdout once the connector polls;
 * SIGTERM closes the engine (which flushes its offsets), then the producer, and exits 0.
 */
public final class OutboxPeer {

    /** Where things are: database, captured table, slot, publication, Kafka, topic. */
    private static final String[] REQUIRED = {
        "database.hostname", "database.port", "database.user", "database.dbname",
        "table", "slot", "publication", "bootstrap.servers", "topic",
    };

    /** How long a batch may wait for its acknowledgements (Debezium Server's default). */
    private static final long DELIVERY_TIMEOUT_MS = 30_000;

    private OutboxPeer() {}

    public static void main(String[] args) throws Exception {
        // Before any Debezium or Kafka class logs: warnings and errors only, to stderr.
        System.setProperty("org.slf4j.simpleLogger.defaultLogLevel", "warn");
        System.setProperty("org.slf4j.simpleLogger.logFile", "System.err");
        // Its lag statistics queue (1,000 entries) overflows during a drain and warns once
        // per dropped sample; the samples are Debezium's own metrics, not events.
        System.setProperty(
                "org.slf4j.simpleLogger.log.io.debezium.metrics.stats.MeasurementCollector", "error");

        Map<String, String> where = arguments(args);
        KafkaProducer<String, String> producer = new KafkaProducer<>(
                producerSettings(where), new StringSerializer(), new StringSerializer());

        CountDownLatch finished = new CountDownLatch(1);
        AtomicReference<String> failure = new AtomicReference<>();
        DebeziumEngine<ChangeEvent<String, String>> engine = DebeziumEngine
                .create(KeyValueHeaderChangeEventFormat.of(SimpleString.class, SimpleString.class, Json.class))
                .using(engineSettings(where))
                .using(new DebeziumEngine.ConnectorCallback() {
                    @Override
                    public void pollingStarted() {
                        System.out.println("ready");
                        System.out.flush();
                    }
                })
                .using((success, message, error) -> {
                    if (!success) {
                        failure.set(message + (error == null ? "" : ": " + error));
                    }
                    finished.countDown();
                })
                .notifying(new KafkaSink(producer))
                .build();

        AtomicBoolean stopping = new AtomicBoolean();
        Runtime.getRuntime().addShutdownHook(new Thread(() -> {
            if (!stopping.compareAndSet(false, true)) {
                return;
            }
            try {
                engine.close();
                finished.await(60, TimeUnit.SECONDS);
            }
            catch (Exception e) {
                System.err.println("debezium peer: close failed: " + e);
            }
            producer.close(Duration.ofSeconds(5));
        }, "outbox-peer-shutdown"));

        ExecutorService executor = Executors.newSingleThreadExecutor();
        executor.execute(engine);
        finished.await();
        if (failure.get() != null && !stopping.get()) {
            System.err.println("debezium peer: engine stopped: " + failure.get());
            System.exit(1);
        }
    }

    private static Map<String, String> arguments(String[] args) {
        Map<String, String> values = new HashMap<>();
        for (String arg : args) {
            int eq = arg.indexOf('=');
            if (eq <= 0) {
                throw new IllegalArgumentException("expected name=value, got " + arg);
            }
            values.put(arg.substring(0, eq), arg.substring(eq + 1));
        }
        for (String name : REQUIRED) {
            if (!values.containsKey(name)) {
                throw new IllegalArgumentException("missing " + name + "=…");
            }
        }
        return values;
    }

    /** The engine, the connector and the outbox event router. */
    static Properties engineSettings(Map<String, String> where) {
        Properties p = new Properties();
        p.setProperty("name", "edupulse-bench-debezium");
        p.setProperty("connector.class", "io.debezium.connector.postgresql.PostgresConnector");
        // Offsets in memory, committed after every batch: the bench starts from a fresh slot
        // each time, and committing each batch confirms its LSN to PostgreSQL at once, as
        // Debezium Server's own example sets (offset.flush.interval.ms=0).
        p.setProperty("offset.storage", "org.apache.kafka.connect.storage.MemoryOffsetBackingStore");
        p.setProperty("offset.flush.interval.ms", "0");

        p.setProperty("database.hostname", where.get("database.hostname"));
        p.setProperty("database.port", where.get("database.port"));
        p.setProperty("database.user", where.get("database.user"));
        p.setProperty("database.password", where.getOrDefault("database.password", ""));
        p.setProperty("database.dbname", where.get("database.dbname"));
        p.setProperty("topic.prefix", "edupulse-bench");

        // pgoutput: PostgreSQL's own decoder, nothing to install on the server.
        p.setProperty("plugin.name", "pgoutput");
        p.setProperty("slot.name", where.get("slot"));
        // The bench creates the publication (FOR TABLE the outbox, publish = 'insert') and
        // the slot before writing, as a deployment does before the connector first starts.
        p.setProperty("publication.name", where.get("publication"));
        p.setProperty("publication.autocreate.mode", "disabled");
        p.setProperty("table.include.list", where.get("table"));
        // An outbox is a queue: what is in the slot is the work; no snapshot of the table.
        p.setProperty("snapshot.mode", "no_data");
        // Only inserts matter to the outbox router (it drops deletes, warns on updates).
        p.setProperty("skipped.operations", "u,d,t");
        p.setProperty("tombstones.on.delete", "false");

        // Batching: larger batches than the default 2048 amortise the engine's per-batch
        // work and the producer's wait for acknowledgements; the queue stays larger than a
        // batch, as the connector's documentation requires.
        p.setProperty("max.batch.size", "8192");
        p.setProperty("max.queue.size", "32768");
        // A partial batch goes out after this wait (default 500 ms): under steady traffic
        // the batch never fills, so this is the connector's own share of the latency. Full
        // batches go at once, so the drain does not depend on it.
        p.setProperty("poll.interval.ms", "10");

        p.setProperty("transforms", "outbox");
        p.setProperty("transforms.outbox.type", "io.debezium.transforms.outbox.EventRouter");
        p.setProperty("transforms.outbox.route.topic.replacement", where.get("topic"));
        // The event type as a header beside the id, so a consumer can tell events apart
        // without parsing the payload (ours sends the CloudEvents headers).
        p.setProperty("transforms.outbox.table.fields.additional.placement", "type:header:eventType");

        // No __debezium.context.* headers (four per message, for OpenLineage): the message
        // carries what an outbox consumer needs, as ours does.
        p.setProperty("extended.headers.enabled", "false");
        // Headers as plain JSON values ("…"), without a schema envelope.
        p.setProperty("header.converter.schemas.enable", "false");
        return p;
    }

    /** The producer: idempotent, acks=all, batching as Kafka's documentation advises. */
    static Properties producerSettings(Map<String, String> where) {
        Properties p = new Properties();
        p.setProperty("bootstrap.servers", where.get("bootstrap.servers"));
        p.setProperty("client.id", "edupulse-bench-debezium");
        p.setProperty("acks", "all");
        p.setProperty("enable.idempotence", "true");
        // The most idempotence allows while keeping each partition in order.
        p.setProperty("max.in.flight.requests.per.connection", "5");
        // Kafka 4's default linger; larger batches than the default 16 KB, since every
        // engine batch arrives at once.
        p.setProperty("linger.ms", "5");
        p.setProperty("batch.size", "262144");
        // As ours: no compression.
        p.setProperty("compression.type", "none");
        return p;
    }

    /** Debezium Server's Kafka sink: send the batch, wait for every ack, then commit it. */
    static final class KafkaSink implements DebeziumEngine.ChangeConsumer<ChangeEvent<String, String>> {
        private final KafkaProducer<String, String> producer;

        KafkaSink(KafkaProducer<String, String> producer) {
            this.producer = producer;
        }

        @Override
        public void handleBatch(List<ChangeEvent<String, String>> records,
                                DebeziumEngine.RecordCommitter<ChangeEvent<String, String>> committer)
                throws InterruptedException {
            List<Future<RecordMetadata>> acks = new ArrayList<>(records.size());
            for (ChangeEvent<String, String> record : records) {
                RecordHeaders headers = new RecordHeaders();
                for (io.debezium.engine.Header<?> header : record.headers()) {
                    Object value = header.getValue();
                    headers.add(header.getKey(),
                            value == null ? null : value.toString().getBytes(StandardCharsets.UTF_8));
                }
                acks.add(producer.send(new ProducerRecord<>(
                        record.destination(), null, null, record.key(), record.value(), headers)));
            }
            for (int i = 0; i < records.size(); i++) {
                try {
                    acks.get(i).get(DELIVERY_TIMEOUT_MS, TimeUnit.MILLISECONDS);
                }
                catch (ExecutionException | TimeoutException e) {
                    throw new DebeziumException("a record was not acknowledged by Kafka", e);
                }
                committer.markProcessed(records.get(i));
            }
            committer.markBatchFinished();
        }
    }
}
