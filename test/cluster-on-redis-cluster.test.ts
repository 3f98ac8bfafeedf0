// The same suite as cluster.test.ts, on a Redis Cluster of three masters with a
// replica each, started for this file on loopback ports. The suite's tests
// ask for their Redis when they run, after this file has chosen the cluster.
import { useRedisCluster } from './helpers/redis';
import './cluster.test';

useRedisCluster();
