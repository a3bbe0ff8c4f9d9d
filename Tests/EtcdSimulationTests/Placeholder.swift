import EtcdRaft
