/* The pod sandbox of the test node (image `pause`, built by tools/node/images with
 * gcc -static -Os): holds the pod's namespaces and does nothing else. SIGINT and SIGTERM end it
 * with status 0, SIGCHLD reaps whatever children it inherited (it is PID 1 of the pod's PID
 * namespace when that is shared); otherwise it waits in pause() forever. */
#include <signal.h>
#include <stddef.h>
#include <sys/wait.h>
#include <unistd.h>

static void stop(int sig) {
  (void)sig;
  _exit(0);
}

static void reap(int sig) {
  (void)sig;
  while (waitpid(-1, NULL, WNOHANG) > 0) {
  }
}

int main(void) {
  struct sigaction action = {0};
  sigemptyset(&action.sa_mask);
  action.sa_handler = stop;
  if (sigaction(SIGINT, &action, NULL) < 0 || sigaction(SIGTERM, &action, NULL) < 0) return 1;
  action.sa_handler = reap;
  action.sa_flags = SA_NOCLDSTOP | SA_RESTART;
  if (sigaction(SIGCHLD, &action, NULL) < 0) return 2;
  for (;;) pause();
}
