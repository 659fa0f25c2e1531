import java.util.concurrent.CompletableFuture;
import java.util.concurrent.CountDownLatch;
import java.util.concurrent.locks.ReentrantLock;

// Threads named like a Pulsar broker's, in the shapes of apache/pulsar#18988: an IO thread
// and a metadata-store thread deadlocked, another IO thread blocked behind them, one IO
// thread parked on a future that never completes, one sleeping. testdata/j*-deadlock.txt are
// its dumps (jcmd <pid> Thread.print -l, jstack -l <pid>); run it with `java Demo.java`.
public class Demo {
    static final Object topicLock = new Object();
    static final ReentrantLock storeLock = new ReentrantLock();
    static final CountDownLatch both = new CountDownLatch(2);

    static void await() { try { both.await(); } catch (InterruptedException e) { } }

    static void handleConnect() { synchronized (topicLock) { both.countDown(); await(); readMetadata(); } }
    static void readMetadata() { storeLock.lock(); }
    static void notifyWatchers() { storeLock.lock(); both.countDown(); await(); updateTopic(); }
    static void updateTopic() { synchronized (topicLock) { } }
    static void lookupTopic() { try { Thread.sleep(500); } catch (InterruptedException e) { } synchronized (topicLock) { } }
    static void waitForPolicies() { new CompletableFuture<Void>().join(); }
    static void idle() { while (true) { try { Thread.sleep(60000); } catch (InterruptedException e) { } } }

    public static void main(String[] args) throws Exception {
        new Thread(Demo::handleConnect, "pulsar-io-4-1").start();
        new Thread(Demo::notifyWatchers, "metadata-store-10-1").start();
        new Thread(Demo::lookupTopic, "pulsar-io-4-2").start();
        new Thread(Demo::waitForPolicies, "pulsar-io-4-3").start();
        new Thread(Demo::idle, "pulsar-io-4-4").start();
        both.await();
        Thread.sleep(600);
        System.out.println("deadlocked"); // internal/pulsartest's wedge test waits for this line
        Thread.sleep(Long.MAX_VALUE);
    }
}
