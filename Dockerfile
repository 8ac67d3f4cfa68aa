# Multi-stage build: compile with the Rust toolchain, run on a slim non-root image.
FROM rust:1-bookworm AS build
RUN apt-get update && apt-get install -y --no-install-recommends cmake pkg-config && rm -rf /var/lib/apt/lists/*
WORKDIR /src
COPY . .
RUN cargo build --release --bin careline

FROM debian:bookworm-slim
RUN apt-get update && apt-get install -y --no-install-recommends ca-certificates espeak-ng mecab mecab-ipadic-utf8 && rm -rf /var/lib/apt/lists/* \
    && useradd --system --home /var/lib/careline --create-home --uid 10001 careline
COPY --from=build /src/target/release/careline /usr/local/bin/careline
COPY prompts /usr/share/careline/prompts
COPY flows /usr/share/careline/flows
USER careline
WORKDIR /var/lib/careline
VOLUME /var/lib/careline
# SIP (UDP/TCP), SIP over TLS, HTTP; RTP uses the range below (publish it as UDP).
EXPOSE 5060/udp 5060/tcp 5061/tcp 8080/tcp 20000-20999/udp
ENV CARELINE_PROMPTS__DIR=/usr/share/careline/prompts \
    CARELINE_FLOWS__DIR=/usr/share/careline/flows \
    CARELINE_RTP__PORTS=20000-20999
ENTRYPOINT ["careline"]
CMD ["serve", "--data-dir", "/var/lib/careline", "--sip-listen", "0.0.0.0:5060", "--tls-listen", "0.0.0.0:5061", "--http-listen", "0.0.0.0:8080"]
