// A thread named like a broker's IO thread that never returns to its event loop (it spins).
// testdata/jcmd-busy.txt is its dump (jcmd <pid> Thread.print -l); run it with `java Busy.java`.
public class Busy {
    static volatile long sink;

    static void decodeFrame() { long h = 0; while (true) { h = h * 31 + System.nanoTime(); sink = h; } }

    public static void main(String[] args) throws Exception {
        new Thread(Busy::decodeFrame, "pulsar-io-7-1").start();
        Thread.sleep(Long.MAX_VALUE);
    }
}
